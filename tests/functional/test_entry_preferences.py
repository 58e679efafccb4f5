"""The resident's say over in-home delivery, and the limits on couriers, through the real
entry flow (HTTP, broker, in-process hub): each refusal has its reason, its advice, an
audit record, and the door never moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from doorstep import demo
from doorstep.access.models import Entry
from doorstep.audit.models import AuditEvent

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _home_today(home: demo.Home) -> datetime:
    return datetime.now(UTC).astimezone(ZoneInfo("Europe/London"))  # demo homes' zone


def _attempt(world: demo.World, barcode: str = "PKG-1") -> dict[str, Any]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    return demo.request_entry(courier, delivery["id"], barcode, home.latitude, home.longitude)


def _preferences(home: demo.Home, **changes: Any) -> dict[str, Any]:
    current = home.resident.call("GET", f"/v1/homes/{home.id}/preferences")
    result: dict[str, Any] = home.resident.call(
        "PUT", f"/v1/homes/{home.id}/preferences", json={**current, **changes}
    )
    return result


def _assert_denied(live: Any, home: demo.Home, entry: dict[str, Any], reason: str) -> None:
    """Denied with this reason and advice, and audited as exactly one denial."""
    assert (entry["state"], entry["reason"]) == ("denied", reason)
    assert entry["advice"]
    with live.sessions() as session:
        audit = session.scalars(select(AuditEvent).where(AuditEvent.subject == entry["id"])).all()
    assert [(a.action, a.data["reason"]) for a in audit] == [("entry:denied", reason)]


def _unlock_calls(world: demo.World) -> int:
    hub = world.homes[0].hub_process
    assert hub is not None
    return int(hub.lock.unlock_calls)  # type: ignore[attr-defined]


def test_not_today_refuses_until_removed(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    closure = home.resident.call("POST", f"/v1/homes/{home.id}/not-today", 201)
    assert closure["kind"] == "not_today"
    assert closure["first_day"] == closure["last_day"] == _home_today(home).date().isoformat()
    _assert_denied(live, home, _attempt(world), "not_today")
    assert _unlock_calls(world) == 0
    removed = home.resident.http.delete(f"/v1/homes/{home.id}/closures/{closure['id']}")
    assert removed.status_code == 204
    assert _attempt(world)["state"] == "unlocked"


def test_vacation_covers_its_days_only(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    today = _home_today(home).date()
    later = {"kind": "vacation", "first_day": str(today + timedelta(days=3)),
             "last_day": str(today + timedelta(days=10))}  # fmt: skip
    home.resident.call("POST", f"/v1/homes/{home.id}/closures", 201, json=later)
    now = {"kind": "vacation", "first_day": str(today - timedelta(days=1)), "last_day": str(today)}
    home.resident.call("POST", f"/v1/homes/{home.id}/closures", 201, json=now)
    _assert_denied(live, home, _attempt(world), "vacation")
    assert _unlock_calls(world) == 0
    backwards = {"kind": "vacation", "first_day": str(today), "last_day": str(today - timedelta(1))}
    response = home.resident.http.post(f"/v1/homes/{home.id}/closures", json=backwards)
    assert response.status_code == 422


def test_weekday_mask_and_switches(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    today = WEEKDAYS[_home_today(home).weekday()]
    _preferences(home, allowed_weekdays=[day for day in WEEKDAYS if day != today])
    _assert_denied(live, home, _attempt(world), "weekday_not_allowed")
    _preferences(home, allowed_weekdays=list(WEEKDAYS), in_home_enabled=False)
    _assert_denied(live, home, _attempt(world), "in_home_disabled")
    _preferences(home, in_home_enabled=True, approval_mode="never")
    _assert_denied(live, home, _attempt(world), "in_home_disabled")
    assert _unlock_calls(world) == 0


def test_courier_sees_the_notes_before_entering(live: Any, world: demo.World) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    _preferences(home, pet_notes="Cat: keep the door shut.", placement_notes="On the stool.")
    demo.book(world, home, ["PKG-1"])
    (stop,) = courier.call("GET", "/v1/courier/stops")
    assert stop["pet_notes"] == "Cat: keep the door shut."
    assert stop["placement_notes"] == "On the stool."


def test_ask_mode_waits_for_the_resident_then_unlocks(live: Any, world: demo.World) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    _preferences(home, approval_mode="ask")
    entry = _attempt(world)
    assert entry["state"] == "awaiting_approval" and entry["advice"]
    assert _unlock_calls(world) == 0
    # The waiting entry holds the door: nobody else may start one meanwhile.
    other = _attempt(world)
    assert (other["state"], other["reason"]) == ("denied", "entry_in_progress")
    approved = home.resident.call(
        "POST", f"/v1/entries/{entry['id']}/approval", json={"decision": "approve"}
    )
    assert approved["state"] == "authorized"
    assert approved["created_at"] == entry["created_at"]
    # The grant names the courier's phone: the door's challenge comes to the phone next.
    challenged = demo.wait_challenge(courier, entry["id"])
    assert challenged["to_sign"]
    assert demo.prove_and_unlock(courier, challenged)["state"] == "unlocked"
    assert _unlock_calls(world) == 1
    again = home.resident.http.post(
        f"/v1/entries/{entry['id']}/approval", json={"decision": "decline"}
    )
    assert again.status_code == 409


def test_declined_and_unanswered_entries_never_unlock(live: Any, world: demo.World) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    _preferences(home, approval_mode="ask", approval_timeout_seconds=30)
    declined = _attempt(world)
    answer = home.resident.call(
        "POST", f"/v1/entries/{declined['id']}/approval", json={"decision": "decline"}
    )
    assert (answer["state"], answer["reason"]) == ("declined", "resident_declined")
    assert answer["advice"]
    unanswered = _attempt(world)
    assert unanswered["state"] == "awaiting_approval"
    # Move the deadline into the past rather than waiting 30 s; the sweep declines it.
    with live.sessions() as session:
        session.execute(
            update(Entry)
            .where(Entry.id == unanswered["id"])
            .values(approval_deadline=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    timed_out = demo.wait_entry(courier, unanswered["id"], "unlocked", timeout=15)
    assert (timed_out["state"], timed_out["reason"]) == ("declined", "approval_timeout")
    assert _unlock_calls(world) == 0
    with live.sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(
                AuditEvent.subject.in_([declined["id"], unanswered["id"]])
            )
        ).all()
    assert sorted(actions) == sorted(["entry:awaiting_approval", "entry:declined"] * 2)


def test_another_resident_cannot_answer(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    _preferences(home, approval_mode="ask")
    entry = _attempt(world)
    with demo.Api(live.url) as anonymous:
        mallory_account = {
            "email": "mallory@doorstep.test",
            "name": "Mallory",
            "password": demo.PASSWORD,
        }
        anonymous.call("POST", "/v1/residents", 201, json=mallory_account)
    with demo.Api.login(
        live.url, grant_type="password", username="mallory@doorstep.test", password=demo.PASSWORD
    ) as mallory:
        response = mallory.http.post(
            f"/v1/entries/{entry['id']}/approval", json={"decision": "approve"}
        )
        assert response.status_code == 404
        assert mallory.http.get(f"/v1/homes/{home.id}/preferences").status_code == 404
        assert mallory.http.post(f"/v1/homes/{home.id}/not-today").status_code == 404
    assert _unlock_calls(world) == 0


def test_suspended_courier_is_denied_at_once(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    courier_id = world.couriers[0][0]
    world.carrier.call("POST", f"/v1/couriers/{courier_id}/suspend")
    _assert_denied(live, home, _attempt(world), "courier_inactive")
    assert _unlock_calls(world) == 0
    world.carrier.call("POST", f"/v1/couriers/{courier_id}/reinstate")
    assert _attempt(world)["state"] == "unlocked"
    with live.sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.subject == courier_id)
        ).all()
    assert "courier:suspended" in actions and "courier:reinstated" in actions


def test_repeated_denials_lock_the_courier_out(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    for _ in range(5):  # the default: 5 denials in 15 minutes
        _assert_denied(live, home, _attempt(world, barcode="GUESS"), "package_unknown")
    locked_out = _attempt(world)  # even with the right parcel now
    assert (locked_out["state"], locked_out["reason"]) == ("denied", "too_many_attempts")
    assert _unlock_calls(world) == 0
