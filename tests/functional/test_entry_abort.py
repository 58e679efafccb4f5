"""The knock step and the courier's abort, through the real flow (HTTP, broker, hub)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent


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
