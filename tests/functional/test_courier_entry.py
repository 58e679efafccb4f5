"""The courier's entry over real HTTP, a real broker and an in-process hub, on SQLite and
PostgreSQL: the happy path and every denial, each with its reason, no grant, an audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.access.models import Entry
from doorstep.audit.models import AuditEvent
from doorstep.audit.service import verify

FAR_AWAY = (48.8584, 2.2945)  # another city


@pytest.fixture
def writer_process() -> bool:
    """As `serve` runs: the hot paths through the writer process (`doorstep.hotwriter`)."""
    return True


def _home(world: demo.World) -> demo.Home:
    return world.homes[0]


def _courier(world: demo.World) -> demo.Api:
    return world.couriers[0][1]


def _denied(live: Any, entry: dict[str, Any], reason: str) -> None:
    assert entry["state"] == "denied"
    assert entry["reason"] == reason
    assert entry["advice"]
    with live.sessions() as session:
        row = session.get(Entry, entry["id"])
        assert row is not None and row.token_id is None and row.command_id is None
        audit = session.scalars(select(AuditEvent).where(AuditEvent.subject == entry["id"])).all()
        assert [(a.action, a.data["reason"]) for a in audit] == [("entry:denied", reason)]


def test_delivery_happy_path_unlocks_and_relocks(live: Any, world: demo.World) -> None:
    home, courier = _home(world), _courier(world)
    delivery = demo.book(world, home, ["PKG-1", "PKG-2"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked"
    home.door("open_door")
    assert demo.wait_entry(courier, entry["id"], "opened")["state"] == "opened"
    home.door("close_door")
    done = demo.wait_entry(courier, entry["id"], "done")
    assert done["state"] == "done"
    assert done["locked_at"] and done["closed_at"] <= done["locked_at"] <= done["done_at"]
    status = home.door("status")["status"]
    assert status == {**status, "lock_state": "locked", "door_state": "closed", "secure": True}
    booked = world.carrier.call("GET", f"/v1/deliveries/{delivery['id']}")
    assert booked["status"] == "delivered"
    assert all(p["delivered_at"] for p in booked["packages"])
    actions = [
        r["action"]
        for r in home.resident.call("GET", f"/v1/homes/{home.id}/audit")
        if r["subject"] == entry["id"]
    ]
    assert actions == [
        "entry:authorized",
        "entry:proof_presented",  # the phone signed the door's challenge
        "entry:unlocked",
        "entry:opened",
        "entry:closed",
        "entry:locked",
        "entry:done",
    ]
    with live.sessions() as session:
        assert verify(session).ok


def test_package_is_not_delivered_twice(live: Any, world: demo.World) -> None:
    home, courier = _home(world), _courier(world)
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    home.door("open_door")
    home.door("close_door")
    demo.wait_entry(courier, entry["id"], "done")
    again = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    _denied(live, again, "package_already_delivered")


def test_denied_when_not_the_assigned_courier(live: Any, world: demo.World) -> None:
    home = _home(world)
    other = world.carrier.call(
        "POST",
        "/v1/couriers",
        201,
        json={"email": "other@parcelly.test", "name": "Other", "password": demo.PASSWORD},
    )
    delivery = demo.book(world, home, ["PKG-1"])
    with demo.Api.login(
        live.url, grant_type="password", username=other["email"], password=demo.PASSWORD
    ) as other_api:
        other_api.phone = demo.Phone()
        other_api.phone.register(other_api)
        entry = demo.request_entry(
            other_api, delivery["id"], "PKG-1", home.latitude, home.longitude
        )
    _denied(live, entry, "courier_not_assigned")
    assert home.hub_process.lock.unlock_calls == 0


def test_denied_without_a_registered_phone_key(live: Any, world: demo.World) -> None:
    home, courier = _home(world), _courier(world)
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(
        courier, delivery["id"], "PKG-1", home.latitude, home.longitude, device_key_id=None
    )
    _denied(live, entry, "device_key_required")
    assert courier.phone is not None and courier.phone.key_id is not None
    courier.call("DELETE", f"/v1/courier/device-keys/{courier.phone.key_id}")
    revoked = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert (revoked["state"], revoked["reason"]) == ("denied", "device_key_required")
    assert home.hub_process.lock.unlock_calls == 0


def test_denied_for_a_package_of_another_delivery(live: Any, world: demo.World) -> None:
    home, courier = _home(world), _courier(world)
    delivery = demo.book(world, home, ["PKG-1"])
    demo.book(world, home, ["PKG-OTHER"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-OTHER", home.latitude, home.longitude)
    _denied(live, entry, "package_unknown")


def test_denied_outside_the_window(live: Any, world: demo.World) -> None:
    home, courier = _home(world), _courier(world)
    now = datetime.now(UTC)
    delivery = demo.book(
        world, home, ["PKG-1"], window=(now + timedelta(hours=2), now + timedelta(hours=3))
    )
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    _denied(live, entry, "outside_window")


@pytest.mark.parametrize("offset, accuracy", [(FAR_AWAY, 5.0), (None, 500.0)])
def test_denied_outside_the_geofence(
    live: Any, world: demo.World, offset: Any, accuracy: float
) -> None:
    home, courier = _home(world), _courier(world)
    delivery = demo.book(world, home, ["PKG-1"])
    lat, lon = offset or (home.latitude, home.longitude)
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", lat, lon, accuracy)
    _denied(live, entry, "outside_geofence")


def test_denied_when_the_hub_is_offline(live: Any, world: demo.World) -> None:
    home, courier = _home(world), _courier(world)
    home.hub_process.stop()
    demo.wait_hub_online(home, online=False)
    home.hub_process = None
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    _denied(live, entry, "hub_offline")


def test_second_entry_at_the_same_door_waits(live: Any, world: demo.World) -> None:
    home, courier = _home(world), _courier(world)
    first = demo.book(world, home, ["PKG-1"])
    second = demo.book(world, home, ["PKG-2"])
    entry = demo.request_entry(courier, first["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked"
    blocked = demo.request_entry(courier, second["id"], "PKG-2", home.latitude, home.longitude)
    _denied(live, blocked, "entry_in_progress")
    assert home.hub_process.lock.unlock_calls == 1


def test_entries_are_visible_only_to_their_parties(live: Any, world: demo.World) -> None:
    home, courier = _home(world), _courier(world)
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert home.resident.call("GET", f"/v1/entries/{entry['id']}")["id"] == entry["id"]
    with demo.Api(live.url) as anonymous:
        anonymous.call(
            "POST",
            "/v1/residents",
            201,
            json={"email": "stranger@doorstep.test", "name": "S", "password": demo.PASSWORD},
        )
    with demo.Api.login(
        live.url, grant_type="password", username="stranger@doorstep.test", password=demo.PASSWORD
    ) as stranger:
        stranger.call("GET", f"/v1/entries/{entry['id']}", 404)
        stranger.call("GET", f"/v1/homes/{home.id}", 404)
        stranger.call("GET", f"/v1/homes/{home.id}/audit", 404)
    courier.call("POST", "/v1/homes", 403, json={})


def test_a_door_relocked_before_anyone_went_in_aborts_the_entry(
    live: Any, world: demo.World
) -> None:
    home, courier = _home(world), _courier(world)
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked"
    home.hub_process.lock.manual_lock()  # as the lock's auto-relock would, door never opened
    aborted = demo.wait_entry(courier, entry["id"], "done")
    assert (aborted["state"], aborted["reason"]) == ("aborted", "door_never_opened")
    assert aborted["advice"]
    booked = world.carrier.call("GET", f"/v1/deliveries/{delivery['id']}")
    assert booked["status"] == "booked"
    assert not any(p["delivered_at"] for p in booked["packages"])
    # The door is free again and the parcel can still go in.
    again = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert again["state"] == "unlocked"
