"""A hub holds at most `MAX_CREDENTIALS` keypad codes in its desired document: the code
that would take one past it is refused (409, naming the limit) and changes nothing, so
the document can always be signed and every later change, revocations first, reaches
the hub. What counts is what the document holds: codes of all the hub's doors that are
not revoked and not ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from doorstep.grants.models import AccessGrant, HubShadow
from doorstep.homes.models import AccessPoint
from doorstep.protocol.shadow import MAX_CREDENTIALS

SEALED = "c2VhbGVkLXBpbg"  # stands for a sealed code; no hub can open it
PER_DOOR = 25  # `grants.service.MAX_CODES_PER_DOOR`: seeded codes spread over doors


def _seed_codes(live: Any, home: demo.Home, count: int) -> None:
    """`count` keypad codes in force on new doors of the home's hub, and on one more
    door a revoked code and an ended one, which a hub does not hold."""
    now = datetime.now(UTC)
    doors = -(-count // PER_DOOR) + 1
    for number in range(doors):
        home.resident.call("POST", f"/v1/homes/{home.id}/access-points", 201,
                           json={"slug": f"d{number}", "name": f"Door {number}"})  # fmt: skip
    with live.sessions() as session:
        points = {
            point.slug: point
            for point in session.scalars(select(AccessPoint).where(AccessPoint.home_id == home.id))
        }
        for number in range(count + 2):
            door = points[f"d{number // PER_DOOR if number < count else doors - 1}"]
            assert door.hub_id == home.hub_id
            session.add(
                AccessGrant(
                    id=f"agr-seed{number:04d}", home_id=home.id, access_point_id=door.id,
                    purpose="guest", method="keypad", label=f"Seed {number}", kind="always",
                    timezone="UTC", windows="[]", require_geofence=False, notes="",
                    created_by="usr-seed", created_at=now - timedelta(days=1), pin_sealed=SEALED,
                    revoked_at=now if number == count else None,
                    ends_at=now - timedelta(hours=1) if number == count + 1 else None,
                )
            )  # fmt: skip
        session.commit()


def _state(live: Any, home: demo.Home) -> tuple[int, int, int]:
    """(grants, grant:created records, shadow version) of the home."""
    with live.sessions() as session:
        grants = session.scalar(
            select(func.count()).select_from(AccessGrant).where(AccessGrant.home_id == home.id)
        )
        created = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "grant:created", AuditEvent.home_id == home.id)
        )
        version = session.scalar(select(HubShadow.version).where(HubShadow.hub_id == home.hub_id))
    return int(grants or 0), int(created or 0), int(version or 0)


def test_a_code_past_what_the_hub_can_hold_is_refused_and_changes_nothing(
    live: Any, world: demo.World
) -> None:
    home = world.homes[0]
    _seed_codes(live, home, MAX_CREDENTIALS - 1)
    path = f"/v1/homes/{home.id}/grants"
    body = {"access_point": "front", "label": "Cleaner", "kind": "always", "method": "keypad"}
    last = home.resident.call("POST", path, 201, json=body)  # the hub's last place
    assert last["pin"]
    before = _state(live, home)

    refused = home.resident.http.post(path, json={**body, "label": "One more"})

    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "conflict"
    assert f"{MAX_CREDENTIALS} keypad codes" in error["message"]
    assert error["details"] == {"limit": MAX_CREDENTIALS}
    assert _state(live, home) == before  # no grant, no audit record, no new version
    # A revocation goes out as ever, and frees a place.
    home.resident.call("DELETE", f"/v1/grants/{last['grant']['id']}")
    again = home.resident.call("POST", path, 201, json={**body, "label": "One more"})
    assert again["pin"]
