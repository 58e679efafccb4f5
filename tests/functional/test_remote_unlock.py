"""The resident unlocks their own door from afar, on real components: only with the
password again; camera first and the verified relock as for any entry; the resident is
emailed; another resident's door is not found; nothing moves on a refusal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

from doorstep import demo
from doorstep.settings import NotifySettings

if TYPE_CHECKING:
    from conftest import AuditWait, Mailbox


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Clients opened by a test, closed after it."""
    with ExitStack() as opened:
        yield opened


def _unlock_calls(world: demo.World) -> int:
    hub = world.homes[0].hub_process
    assert hub is not None
    return int(hub.lock.unlock_calls)  # type: ignore[attr-defined]


def test_remote_unlock_needs_the_password_and_ends_with_a_verified_relock(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], wait_audit: AuditWait
) -> None:
    home = world.homes[0]
    path = f"/v1/homes/{home.id}/doors/front/unlock"
    wrong = home.resident.http.post(path, json={"password": "not the password"})
    assert wrong.status_code == 401
    assert _unlock_calls(world) == 0
    missing = home.resident.http.post(path, json={})
    assert missing.status_code == 422

    entry = home.resident.call("POST", path, json={"password": demo.PASSWORD})
    assert entry["state"] == "unlocked", entry
    assert _unlock_calls(world) == 1
    wait_audit(home.resident, home.id, "entry:authorized", entry["id"], purpose="resident")
    home.door("open_door")
    home.door("close_door")
    done = demo.wait_entry(home.resident, entry["id"], "done")
    assert (done["state"], done["purpose"], done["method"]) == ("done", "resident", "remote")
    mailbox[0].wait_subjects(["Your door was unlocked from the app", "Your door is locked again"])

    other = home.resident.http.post(
        f"/v1/homes/{home.id}/doors/garage/unlock", json={"password": demo.PASSWORD}
    )
    assert other.status_code == 404


def test_another_resident_cannot_unlock_and_an_offline_hub_is_refused(
    live: Any, world: demo.World, stack: ExitStack
) -> None:
    home = world.homes[0]
    email, password = "neighbour@example.org", "neighbour-password"
    with demo.Api(world.service.url) as anonymous:
        anonymous.call(
            "POST", "/v1/residents", 201, json={"email": email, "name": "N", "password": password}
        )
    neighbour = stack.enter_context(
        demo.Api.login(world.service.url, grant_type="password", username=email, password=password)
    )
    answer = neighbour.http.post(
        f"/v1/homes/{home.id}/doors/front/unlock", json={"password": password}
    )
    assert answer.status_code == 404
    assert _unlock_calls(world) == 0
    hub = home.hub_process
    assert hub is not None
    hub.stop()
    demo.wait_hub_online(home, online=False)
    offline = home.resident.http.post(
        f"/v1/homes/{home.id}/doors/front/unlock", json={"password": demo.PASSWORD}
    )
    assert offline.status_code == 409 and "offline" in offline.text


def test_a_remote_unlock_whose_hub_does_not_answer_in_time_is_accepted_then_followed(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """202: the unlock was sent, but the hub did not answer within the wait; the entry,
    still `authorized`, unlocks once the command reaches the hub."""
    home, link = world.homes[0], live.runtime.link
    held: list[tuple[str, Any]] = []
    monkeypatch.setattr(link, "publish_command", lambda hub_id, cmd: held.append((hub_id, cmd)))
    monkeypatch.setattr(live.runtime.settings.entry, "hub_reply_timeout_seconds", 0.5)

    answer = home.resident.http.post(
        f"/v1/homes/{home.id}/doors/front/unlock", json={"password": demo.PASSWORD}
    )

    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "authorized"
    assert _unlock_calls(world) == 0
    [(hub_id, command)] = held
    monkeypatch.undo()  # the command reaches the hub after all, late
    link.publish_command(hub_id, command)
    entry_id = answer.json()["id"]
    assert demo.wait_entry(home.resident, entry_id, "unlocked")["state"] == "unlocked"
