"""Service providers end to end on real components: a provider signs up and invites a
worker by email; the resident books an appointment; the provider assigns the worker, who
enters through the entry engine with a phone key; deactivating the worker or blocking
the provider takes effect at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from doorstep import demo
from doorstep.settings import NotifySettings

if TYPE_CHECKING:
    from conftest import Mailbox

PASSWORD = "worker-password-1"


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Clients opened by a test, closed after it."""
    with ExitStack() as opened:
        yield opened


def _mail(box: Mailbox, subject: str) -> str:
    box.wait_subjects([subject])
    texts = [
        m.get_payload(decode=True).decode() for _to, m in box.messages if m["subject"] == subject
    ]
    return str(texts[-1])


def _london(delta: timedelta) -> str:
    """A wall-clock time in the demo homes' zone, as the resident enters it."""
    moment = datetime.now(ZoneInfo("Europe/London")) + delta
    return moment.replace(tzinfo=None, microsecond=0).isoformat()


def _visit(worker: demo.Api, grant_id: str) -> dict[str, Any]:
    assert worker.phone is not None
    body = {"grant_id": grant_id, "device_key_id": worker.phone.key_id}
    entry: dict[str, Any] = worker.call("POST", "/v1/visits?wait=challenge", 201, json=body)
    if entry["state"] != "authorized" or not entry.get("to_sign"):
        return entry
    unlocked: dict[str, Any] = worker.call(
        "POST",
        f"/v1/visits/{entry['id']}/unlock?wait=unlocked",
        json={"proof": worker.phone.prove(entry["to_sign"])},
    )
    return unlocked


def test_a_provider_worker_enters_on_an_appointment_until_deactivated_or_blocked(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], stack: ExitStack
) -> None:
    box, _port = mailbox
    url, home = world.service.url, world.homes[0]
    with demo.Api(url) as anonymous:
        provider = anonymous.call(
            "POST",
            "/v1/providers",
            201,
            json={
                "name": "Sparkle",
                "admin_email": "boss@sparkle.test",
                "admin_name": "Boss",
                "admin_password": PASSWORD,
            },
        )
    admin = stack.enter_context(
        demo.Api.login(url, grant_type="password", username="boss@sparkle.test", password=PASSWORD)
    )
    invited = admin.call(
        "POST",
        f"/v1/providers/{provider['id']}/workers",
        201,
        json={"email": "wes@sparkle.test", "name": "Wes"},
    )
    token = re.search(r"#([A-Za-z0-9_-]+)", _mail(box, "Join Sparkle on Doorstep"))
    assert token is not None
    with demo.Api(url) as anonymous:
        anonymous.call(
            "POST", "/v1/invitations/accept", json={"token": token.group(1), "password": PASSWORD}
        )
    worker = stack.enter_context(
        demo.Api.login(url, grant_type="password", username="wes@sparkle.test", password=PASSWORD)
    )
    worker.phone = demo.Phone()
    worker.phone.register(worker)
    # The worker cannot act as an admin.
    assert (
        worker.http.post(
            f"/v1/providers/{provider['id']}/workers", json={"email": "x@sparkle.test", "name": "X"}
        ).status_code
        == 404
    )

    assert provider["id"] in [p["id"] for p in home.resident.call("GET", "/v1/providers")]
    appointment = home.resident.call(
        "POST",
        f"/v1/homes/{home.id}/appointments",
        201,
        json={
            "provider_id": provider["id"],
            "access_point": "front",
            "notes": "Key is in the app",
            "starts_at": _london(-timedelta(hours=1)),
            "ends_at": _london(timedelta(hours=2)),
        },
    )
    assert (appointment["purpose"], appointment["grantee_id"]) == ("service", None)

    unassigned = _visit(worker, appointment["id"])
    assert (unassigned["state"], unassigned["reason"]) == ("denied", "not_granted")
    listed = admin.call("GET", f"/v1/providers/{provider['id']}/appointments")
    assert [a["id"] for a in listed] == [appointment["id"]]
    # A worker reads only the appointments assigned to them, not the provider's book.
    assert worker.call("GET", f"/v1/providers/{provider['id']}/appointments") == []
    admin.call(
        "POST",
        f"/v1/appointments/{appointment['id']}/assign",
        json={"worker_id": invited["user_id"]},
    )
    mine = worker.call("GET", f"/v1/providers/{provider['id']}/appointments")
    assert [a["id"] for a in mine] == [appointment["id"]]
    entry = _visit(worker, appointment["id"])
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    home.door("close_door")
    assert demo.wait_entry(worker, entry["id"], "done")["state"] == "done"
    assert "with the Doorstep app" in _mail(box, "Sparkle is coming in")

    admin.call("POST", f"/v1/providers/{provider['id']}/workers/{invited['user_id']}/deactivate")
    inactive = _visit(worker, appointment["id"])
    assert (inactive["state"], inactive["reason"]) == ("denied", "visitor_inactive")

    blocked = home.resident.call("POST", f"/v1/homes/{home.id}/blocked-providers/{provider['id']}")
    assert blocked == {"revoked": 1}
    again = home.resident.http.post(
        f"/v1/homes/{home.id}/appointments",
        json={
            "provider_id": provider["id"],
            "access_point": "front",
            "starts_at": _london(timedelta(hours=1)),
            "ends_at": _london(timedelta(hours=2)),
        },
    )
    assert again.status_code == 409 and "blocked" in again.text
