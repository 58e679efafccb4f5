"""The knock step and the courier's abort, through the real flow (HTTP, broker, hub)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from polling import wait_until


def _unlock_calls(world: demo.World) -> int:
    hub = world.homes[0].hub_process
    assert hub is not None
    return int(hub.lock.unlock_calls)  # type: ignore[attr-defined]


def _request(world: demo.World, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(
        courier, delivery["id"], "PKG-1", home.latitude, home.longitude, **body
    )
    return delivery, entry


def _audit(live: Any, entry_id: str) -> list[tuple[str, Any]]:
    with live.sessions() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.subject == entry_id)).all()
    return [(row.action, row.data.get("reason") or row.data.get("why")) for row in rows]


def test_someone_answering_means_no_entry(live: Any, world: demo.World) -> None:
    _delivery, entry = _request(world, nobody_answered=False)
    assert (entry["state"], entry["reason"]) == ("denied", "someone_answered")
    assert "hand the parcel over" in entry["advice"]
    assert _unlock_calls(world) == 0


def test_pet_abort_after_the_door_opened_ends_aborted_and_relocked(
    live: Any, world: demo.World
) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery, entry = _request(world)
    assert entry["state"] == "unlocked"
    home.door("open_door")
    demo.wait_entry(courier, entry["id"], "opened")
    stopped = courier.call(
        "POST", f"/v1/courier/entries/{entry['id']}/abort", json={"reason": "pet"}
    )
    assert stopped["state"] == "opened"  # the door is still open: the relock is still owed
    home.door("close_door")
    ended = demo.wait_entry(courier, entry["id"], "done")
    assert (ended["state"], ended["reason"]) == ("aborted", "courier_aborted")
    assert ended["advice"]
    assert home.door("status")["status"]["secure"] is True
    booked = world.carrier.call("GET", f"/v1/deliveries/{delivery['id']}")
    assert booked["status"] == "booked"  # not delivered: the parcel goes the fallback way
    assert _audit(live, entry["id"])[-2:] == [
        ("entry:locked", None),
        ("entry:aborted", "courier_aborted"),
    ]
    assert ("entry:abort_requested", "pet") in _audit(live, entry["id"])


def test_abort_before_unlock_ends_at_once(live: Any, world: demo.World) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    current = home.resident.call("GET", f"/v1/homes/{home.id}/preferences")
    home.resident.call(
        "PUT", f"/v1/homes/{home.id}/preferences", json={**current, "approval_mode": "ask"}
    )
    _delivery, entry = _request(world)
    assert entry["state"] == "awaiting_approval"
    stopped = courier.call(
        "POST",
        f"/v1/courier/entries/{entry['id']}/abort",
        json={"reason": "person", "note": "someone inside shouted"},
    )
    assert (stopped["state"], stopped["reason"]) == ("aborted", "courier_aborted")
    late = home.resident.http.post(
        f"/v1/entries/{entry['id']}/approval", json={"decision": "approve"}
    )
    assert late.status_code == 409
    assert _unlock_calls(world) == 0
    again = courier.http.post(f"/v1/courier/entries/{entry['id']}/abort", json={"reason": "pet"})
    assert again.status_code == 409


def test_abort_is_refused_for_bad_input_residents_and_unknown_entries(
    live: Any, world: demo.World
) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    _delivery, entry = _request(world)
    path = f"/v1/courier/entries/{entry['id']}/abort"
    assert courier.http.post(path, json={"reason": "bored"}).status_code == 422
    assert home.resident.http.post(path, json={"reason": "pet"}).status_code == 403
    unknown = courier.http.post("/v1/courier/entries/ent-0000000000000000/abort",
                                json={"reason": "pet"})  # fmt: skip
    assert unknown.status_code == 404
    assert demo.wait_entry(courier, entry["id"], "unlocked")["state"] == "unlocked"


def _door_actions(live: Any, home_id: str) -> list[tuple[str, Any]]:
    with live.sessions() as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.home_id == home_id, AuditEvent.action.like("door:%"))
            .order_by(AuditEvent.seq)
        ).all()
    return [(row.action, row.data.get("ends_entry") or row.data.get("reason")) for row in rows]


def test_abort_before_anyone_went_in_relocks_the_door_at_once(live: Any, make_world: Any) -> None:
    # No auto-relock on this lock: only the hub's own relock of an unopened door (after
    # 60 s) would lock it, so a lock within seconds is the abort's.
    world = make_world(auto_relock_seconds=None)
    home, courier = world.homes[0], world.couriers[0][1]
    delivery, entry = _request(world)
    assert entry["state"] == "unlocked"

    stopped = courier.call(
        "POST", f"/v1/courier/entries/{entry['id']}/abort", json={"reason": "pet"}
    )
    assert stopped["state"] == "unlocked"  # the relock is owed, and now asked for

    ended = demo.wait_entry(courier, entry["id"], "done", timeout=10)
    assert (ended["state"], ended["reason"]) == ("aborted", "courier_aborted")
    assert home.door("status")["status"]["secure"] is True
    assert _door_actions(live, home.id) == [
        ("door:lock_requested", entry["id"]),
        ("door:locked", None),
    ]
    booked = world.carrier.call("GET", f"/v1/deliveries/{delivery['id']}")
    assert booked["status"] == "booked"


def test_an_unlock_still_on_its_way_when_the_courier_aborts_is_relocked_behind_it(
    live: Any, make_world: Any
) -> None:
    # A bolt that takes two seconds: the abort, and its lock, reach the hub while the
    # unlock is still moving it; the service hears of the unlock after the abort.
    world = make_world(auto_relock_seconds=None, motor_seconds=2.0)
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    asked = courier.call(
        "POST", "/v1/courier/entries?wait=challenge", 201,
        json={"delivery_id": delivery["id"], "barcode": "PKG-1", "latitude": home.latitude,
              "longitude": home.longitude, "accuracy_m": 8.0, "nobody_answered": True,
              "device_key_id": courier.phone.key_id},
    )  # fmt: skip
    proof = courier.phone.prove(asked["to_sign"])
    entry = courier.call(
        "POST", f"/v1/courier/entries/{asked['id']}/unlock?wait=none", json={"proof": proof}
    )
    assert entry["state"] == "authorized"  # the unlock is on its way

    stopped = courier.call(
        "POST", f"/v1/courier/entries/{entry['id']}/abort", json={"reason": "person"}
    )
    assert (stopped["state"], stopped["reason"]) == ("aborted", "courier_aborted")

    hub = home.hub_process
    assert hub is not None
    wait_until(lambda: _door_actions(live, home.id)[-1:] == [("door:locked", None)], 10,
               "the hub to report the door locked again")  # fmt: skip
    assert _unlock_calls(world) == 1  # the unlock did happen, and was undone
    assert home.door("status")["status"]["secure"] is True
    actions = [action for action, _ in _audit(live, entry["id"])]
    assert actions[-3:] == ["entry:abort_requested", "entry:aborted", "entry:unlocked_after_end"]
    assert courier.call("GET", f"/v1/entries/{entry['id']}")["state"] == "aborted"


def test_a_second_abort_answers_the_entry_as_it_is_and_sends_nothing_again(
    live: Any, make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No auto-relock, and the service's commands held back until both aborts are in:
    # the entry is still unlocked when the courier calls it off a second time.
    world = make_world(auto_relock_seconds=None)
    home, courier = world.homes[0], world.couriers[0][1]
    _delivery, entry = _request(world)
    assert entry["state"] == "unlocked"
    link = live.runtime.link
    held: list[tuple[str, Any]] = []
    monkeypatch.setattr(link, "publish_command", lambda hub_id, cmd: held.append((hub_id, cmd)))
    path = f"/v1/courier/entries/{entry['id']}/abort"

    first = courier.call("POST", path, json={"reason": "pet"})
    again = courier.call("POST", path, json={"reason": "person", "note": "tapped twice"})

    assert first["state"] == again["state"] == "unlocked"
    assert [action for action, _ in _audit(live, entry["id"])].count("entry:abort_requested") == 1
    assert ("entry:abort_requested", "pet") in _audit(live, entry["id"])
    assert _door_actions(live, home.id) == [("door:lock_requested", entry["id"])]
    assert len(held) == 1
    monkeypatch.undo()  # the one lock reaches the hub, which relocks and ends the entry
    link.publish_command(*held[0])
    ended = demo.wait_entry(courier, entry["id"], "done", timeout=10)
    assert (ended["state"], ended["reason"]) == ("aborted", "courier_aborted")
