"""The resident locks their own door from afar ("Lock now"), on real components (the
service over HTTP, Mosquitto, an in-process hub): no password needed; the answer comes
once the hub has verified the bolt locked and the door shut; the request and its outcome
are audited; an open door, someone's entry in progress, another resident and an offline
hub are all refused, and then the bolt is never asked to move."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.access import remote
from doorstep.accounts.models import PrincipalKind
from doorstep.accounts.service import Principal
from doorstep.audit.models import AuditEvent
from doorstep.homes.models import Home
from doorstep.hublink.models import HubEvent
from doorstep.permissions import PrincipalRole
from doorstep.protocol.messages import EventKind
from doorstep.web.status import home_status

if TYPE_CHECKING:
    from conftest import AuditWait, Live


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


def _lock(world: demo.World) -> Any:
    hub = world.homes[0].hub_process
    assert hub is not None
    return hub.lock  # type: ignore[attr-defined]


def _front_door_id(home: demo.Home) -> str:
    points = home.resident.call("GET", f"/v1/homes/{home.id}")["access_points"]
    return str(next(point["id"] for point in points if point["slug"] == "front"))


def _owner_id(live: Live, home: demo.Home) -> str:
    with live.sessions() as session:
        row = session.get(Home, home.id)
        assert row is not None
        return row.owner_id


def _lock_status_text(live: Live, home: demo.Home) -> str:
    """What the resident's home page says of the front door's lock."""
    with live.sessions() as session:
        row = session.get(Home, home.id)
        assert row is not None
        items = {item.key: item.text for item in home_status(session, home=row)}
    return items["lock:front"]


def _outcomes(live: Live, command_id: str) -> list[tuple[str, str]]:
    """(action, actor) of every audit record of a lock command's outcome."""
    actions = ["door:locked", "door:lock_refused", "door:lock_unanswered"]
    with live.sessions() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action.in_(actions))).all()
    return [(row.action, row.actor) for row in rows if row.data.get("command_id") == command_id]


def _lock_commands_seen(live: Live, home: demo.Home) -> list[str]:
    """Kinds of the hub's journalled answers to any lock command, as the service stored
    them (events are kept after the hub forgets them)."""
    kinds = [EventKind.LOCK_COMMAND, EventKind.COMMAND_REFUSED]
    with live.sessions() as session:
        rows = session.scalars(
            select(HubEvent.kind).where(HubEvent.hub_id == home.hub_id, HubEvent.kind.in_(kinds))
        ).all()
    return list(rows)


def test_lock_after_a_remote_unlock_while_the_door_is_closed(
    live: Live, world: demo.World, wait_audit: AuditWait
) -> None:
    home = world.homes[0]
    door_id = _front_door_id(home)
    entry = home.resident.call(
        "POST", f"/v1/homes/{home.id}/doors/front/unlock", json={"password": demo.PASSWORD}
    )
    assert entry["state"] == "unlocked" and not _lock(world).status().secure

    # No password: locking is the safe direction. The answer waits for the verified lock.
    locked = home.resident.call("POST", f"/v1/homes/{home.id}/doors/front/lock")

    assert locked["state"] == "locked" and locked["door"] == "front"
    assert locked["ended_entry"] == entry["id"]
    assert _lock(world).status().secure
    assert _lock(world).lock_calls == 1
    command_id = locked["command_id"]
    requested = wait_audit(home.resident, home.id, "door:lock_requested", door_id)
    assert requested["actor"] == f"resident:{_owner_id(live, home)}"
    assert requested["data"]["command_id"] == command_id
    done = wait_audit(home.resident, home.id, "door:locked", door_id, command_id=command_id)
    assert done["data"]["door"] == "front" and done["data"]["seqs"]
    # Recorded once, from the hub's journalled `lock.command` event, not by the request.
    assert _outcomes(live, command_id) == [("door:locked", f"hub:{home.hub_id}")]
    assert _lock_status_text(live, home) == "Locked"
    # The lock ended the resident's own entry the way a relock does: nobody went in.
    ended = demo.wait_entry(home.resident, entry["id"], "aborted")
    assert (ended["state"], ended["reason"]) == ("aborted", "door_never_opened")


def test_an_open_door_is_refused_and_the_bolt_does_not_move(
    live: Live, world: demo.World, wait_audit: AuditWait
) -> None:
    home = world.homes[0]
    home.door("manual_unlock")
    home.door("open_door")

    answer = home.resident.http.post(f"/v1/homes/{home.id}/doors/front/lock")

    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["details"]["reason"]) == ("lock_refused", "door_open")
    assert "open door" in error["message"]
    status = _lock(world).status()
    assert (status.lock_state.name, status.door_state.name) == ("UNLOCKED", "OPEN")
    assert _lock(world).lock_calls == 0
    refused = wait_audit(home.resident, home.id, "door:lock_refused", _front_door_id(home))
    assert refused["data"]["reason"] == "door_open"
    command_id = refused["data"]["command_id"]
    assert _outcomes(live, command_id) == [("door:lock_refused", f"hub:{home.hub_id}")]


@pytest.mark.parametrize("door_open", [False, True], ids=["locked", "refused"])
def test_the_outcome_is_audited_when_nobody_waits_for_the_reply(
    live: Live, world: demo.World, wait_audit: AuditWait, door_open: bool
) -> None:
    """The request that asked is gone (the service restarted mid-wait, or the reply came
    after its timeout): the hub's journalled answer still puts the outcome in the audit
    log, from the event alone."""
    home = world.homes[0]
    home.door("manual_unlock")
    if door_open:
        home.door("open_door")
    runtime = live.runtime
    assert runtime.link is not None and runtime.writer is not None
    resident = Principal(PrincipalKind.USER, _owner_id(live, home), PrincipalRole.RESIDENT)
    order = runtime.writer.submit(
        lambda tx: remote.remote_lock(
            tx, resident=resident, home_id=home.id, slug="front", now=runtime.clock.now(),
            settings=runtime.settings.entry, signer=runtime.keys.signer,
        )
    ).result(10)  # fmt: skip
    # Published as the request publishes it, with no waiter: nobody records anything
    # when the reply comes.
    runtime.link.publish_command(order.hub_id, order.command)

    command_id = order.command.command_id
    action = "door:lock_refused" if door_open else "door:locked"
    record = wait_audit(home.resident, home.id, action, _front_door_id(home), command_id=command_id)

    assert record["actor"] == f"hub:{home.hub_id}"
    assert record["data"]["reason"] == ("door_open" if door_open else None)
    assert _lock(world).status().secure is not door_open
    assert _outcomes(live, command_id) == [(action, f"hub:{home.hub_id}")]


def test_a_courier_entry_in_progress_is_not_locked_mid_delivery(
    live: Live, world: demo.World
) -> None:
    home = world.homes[0]
    delivery = demo.book(world, home, ["PKG-LOCK-1"])
    courier = world.couriers[0][1]
    entry = demo.request_entry(courier, delivery["id"], "PKG-LOCK-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry

    answer = home.resident.http.post(f"/v1/homes/{home.id}/doors/front/lock")

    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["details"]["reason"] == "entry_in_progress"
    assert _lock(world).lock_calls == 0
    assert _lock_commands_seen(live, home) == []


def test_another_resident_is_not_found_and_nothing_is_sent(
    live: Live, world: demo.World, stack: ExitStack
) -> None:
    home = world.homes[0]
    home.door("manual_unlock")  # a lock command that got through would move the bolt
    email, password = "lock-neighbour@example.org", "neighbour-password"
    with demo.Api(world.service.url) as anonymous:
        anonymous.call(
            "POST", "/v1/residents", 201, json={"email": email, "name": "N", "password": password}
        )
    neighbour = stack.enter_context(
        demo.Api.login(world.service.url, grant_type="password", username=email, password=password)
    )

    answer = neighbour.http.post(f"/v1/homes/{home.id}/doors/front/lock")
    unknown = home.resident.http.post(f"/v1/homes/{home.id}/doors/garage/lock")

    assert (answer.status_code, unknown.status_code) == (404, 404)
    # A round trip through the hub after the refusals: had a command been sent before it,
    # the hub would have answered it first (one connection, in order).
    home.door("manual_lock")
    assert home.resident.call("POST", f"/v1/homes/{home.id}/doors/front/lock")["state"] == (
        "locked"
    )
    assert _lock(world).lock_calls == 0
    assert _lock_commands_seen(live, home) == [EventKind.LOCK_COMMAND]


def test_an_offline_hub_is_refused_and_nothing_is_sent(live: Live, world: demo.World) -> None:
    home = world.homes[0]
    hub = home.hub_process
    assert hub is not None
    hub.stop()
    demo.wait_hub_online(home, online=False)

    answer = home.resident.http.post(f"/v1/homes/{home.id}/doors/front/lock")

    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["details"]["reason"] == "hub_offline"
    assert "offline" in error["message"] and "nothing was sent" in error["message"]


def test_a_hub_that_answers_too_late_is_unanswered_then_locked(
    live: Live, world: demo.World, wait_audit: AuditWait, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resident is told the door did not answer (504), and the audit log says so;
    when the hub's answer does come, its outcome is recorded as well."""
    home = world.homes[0]
    home.door("manual_unlock")
    link = live.runtime.link
    assert link is not None
    held: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        link, "publish_command", lambda hub_id, command: held.append((hub_id, command))
    )
    monkeypatch.setattr(live.runtime.settings.entry, "hub_reply_timeout_seconds", 0.5)

    answer = home.resident.http.post(f"/v1/homes/{home.id}/doors/front/lock")

    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["code"] == "hub_timeout"
    [(hub_id, command)] = held
    door_id = _front_door_id(home)
    unanswered = wait_audit(
        home.resident, home.id, "door:lock_unanswered", door_id, command_id=command.command_id
    )
    assert unanswered["actor"] == f"resident:{_owner_id(live, home)}"
    assert _lock(world).lock_calls == 0

    monkeypatch.undo()  # the command reaches the hub after all, late
    link.publish_command(hub_id, command)

    wait_audit(home.resident, home.id, "door:locked", door_id, command_id=command.command_id)
    assert _lock(world).status().secure
    assert _outcomes(live, command.command_id) == [
        ("door:lock_unanswered", f"resident:{_owner_id(live, home)}"),
        ("door:locked", f"hub:{home.hub_id}"),
    ]
