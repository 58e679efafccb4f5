"""A guest's or a provider worker's entry on an access grant, through the same engine as
a courier's.

`decide_visit` runs as one writer job, like `service.decide`: it authenticates the
visitor's token and checks, in order, and records a denial with a reason code or
authorizes the entry (a grant bound to it and to the phone's key, the hub's challenge
next, then the unlock with the phone's proof, camera first, relock verified; all of that
is `service`'s, shared with couriers):

1. The visitor is a guest or a worker, active, and the grant is theirs (`not_granted`,
   `visitor_inactive`); for an appointment, the worker is an active member of the
   provider the appointment is with, the provider is active, and the home has not
   blocked it (`provider_blocked`).
2. The grant is not revoked (`grant_revoked`), now is inside its schedule in the home's
   time zone (`outside_schedule`, see `doorstep.grants.schedule`), and it has uses left
   (`uses_exhausted`).
3. The phone's key is registered (proof of possession), the position is within the
   home's geofence when the grant asks for it, the hub is online, no other entry is open
   at that door, and the attempt limits hold (the same counts as for couriers).

When the phone's proof comes, the checks of 1 and 2 that may have changed since are run
again (`proof_denial`): an entry whose grant was revoked, reassigned or has closed, or
whose visitor, worker or provider was deactivated or blocked meanwhile ends `denied` with
that reason, and no unlock is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from doorstep.access import service
from doorstep.access.models import OPEN_STATES, EntryState
from doorstep.accounts.models import PrincipalKind, Role
from doorstep.accounts.service import Principal
from doorstep.audit.service import append_tx
from doorstep.db import new_id
from doorstep.errors import Forbidden, NotAuthenticated
from doorstep.grants.models import Purpose
from doorstep.grants.schedule import Schedule, ScheduleKind, WeeklyWindow
from doorstep.notify import outbox
from doorstep.permissions import PrincipalRole
from doorstep.protocol import Reason
from doorstep.protocol.grants import GrantSigner
from doorstep.security import token_digest
from doorstep.settings import EntrySettings
from doorstep.sql import Tx

_OPEN = ", ".join(f"'{state}'" for state in OPEN_STATES)

_VISITOR = (
    "SELECT u.id, u.role, u.active, t.expires_at FROM access_tokens t"
    " JOIN users u ON u.id = t.principal_id WHERE t.digest = ? AND t.principal_kind = 'user'"
)

# An appointment's standing: its worker active at the provider, the provider active, and
# whether the home has blocked it.
_STANDING = (
    " (SELECT pm.active FROM provider_members pm"
    "  WHERE pm.provider_id = g.provider_id AND pm.user_id = g.grantee_id),"
    " (SELECT pr.active FROM providers pr WHERE pr.id = g.provider_id),"
    " (SELECT 1 FROM provider_blocks pb"
    "  WHERE pb.home_id = g.home_id AND pb.provider_id = g.provider_id)"
)

_GRANT = (
    "SELECT g.grantee_id, g.purpose, g.kind, g.timezone, g.starts_at, g.ends_at,"  # noqa: S608
    " g.windows, g.uses_limit, g.require_geofence, g.revoked_at, g.provider_id, g.home_id,"
    " g.access_point_id, ap.slug, ap.hub_id, hub.online, hub.claimed_at, h.latitude,"
    f" h.longitude, h.geofence_m,{_STANDING},"
    f" (SELECT e.id FROM entries e WHERE e.access_point_id = g.access_point_id"
    f"  AND e.state IN ({_OPEN}) LIMIT 1)"
    " FROM access_grants g JOIN homes h ON h.id = g.home_id"
    " JOIN access_points ap ON ap.id = g.access_point_id"
    " LEFT JOIN hubs hub ON hub.id = ap.hub_id"
    " WHERE g.id = ?"
)

# The grant as `proof_denial` reads it again when the phone's proof comes.
_GRANT_NOW = (
    "SELECT g.grantee_id, g.purpose, g.kind, g.timezone, g.starts_at, g.ends_at, g.windows,"  # noqa: S608
    f" g.revoked_at,{_STANDING} FROM access_grants g WHERE g.id = ?"
)

# Entries that used (or are using) a grant: unlocked at some point, or still open.
_USES = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM entries WHERE grant_id = ?"  # noqa: S608
    f" AND (unlocked_at IS NOT NULL OR state IN ({_OPEN})) LIMIT ?) AS used"
)

VISITOR_ROLES = {Role.GUEST: PrincipalRole.GUEST, Role.WORKER: PrincipalRole.WORKER}


@dataclass(frozen=True, slots=True)
class VisitRequest:
    grant_id: str
    latitude: float | None = None
    longitude: float | None = None
    accuracy_m: float | None = None
    device_key_id: str | None = None


def decide_visit(
    tx: Tx,
    *,
    token: str,
    request: VisitRequest,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
) -> service.EntryDecision:
    """Authenticate the visitor, check everything, record the outcome (a writer job)."""
    visitor, active = _visitor(tx, token, now)
    home_id: str | None = None
    try:
        if not active:
            raise service.Denied(Reason.VISITOR_INACTIVE)
        service._check_courier_limits(tx, visitor, now, settings)
        pop_key = service._device_key(tx, visitor, request.device_key_id, settings)
        target = _check(tx, visitor, request, now, settings)
        target = replace(target, device_key_id=request.device_key_id, pop_key=pop_key)
        # Denied too if a concurrent decision took the door since `_check` read it free.
        return service._authorize(tx, visitor, target, now, settings, signer)
    except service.Denied as denial:
        home_id = denial.home_id
        return service.EntryDecision(_deny(tx, visitor, request, denial, home_id, now), None)


def _visitor(tx: Tx, token: str, now: datetime) -> tuple[Principal, bool]:
    row = tx.one(_VISITOR, (token_digest(token),))
    if row is None or (tx.parse_time(row[3]) or now) <= now:
        raise NotAuthenticated("token is unknown or expired")
    role = VISITOR_ROLES.get(Role(row[1])) if row[1] in set(Role) else None
    if role is None:
        raise Forbidden("only guests and provider workers enter on access grants")
    return Principal(PrincipalKind.USER, str(row[0]), role), bool(row[2])


def schedule_of(
    kind: str, timezone: str, starts_at: Any, ends_at: Any, windows: str, tx: Tx
) -> Schedule:
    parsed = tuple(WeeklyWindow.from_json(window) for window in orjson.loads(windows))
    return Schedule(
        ScheduleKind(kind), ZoneInfo(timezone), tx.parse_time(starts_at), tx.parse_time(ends_at),
        parsed,
    )  # fmt: skip


def _check(
    tx: Tx, visitor: Principal, request: VisitRequest, now: datetime, settings: EntrySettings
) -> service._Target:
    row = tx.one(_GRANT, (request.grant_id,))
    if row is None or row[0] != visitor.id:
        raise service.Denied(Reason.NOT_GRANTED, extra={"grant_id": request.grant_id})
    (
        _,
        purpose,
        kind,
        timezone,
        starts_at,
        ends_at,
        windows,
        uses_limit,
        require_geofence,
        revoked_at,
        _provider_id,
        home_id,
        access_point_id,
        slug,
        hub_id,
        online,
        claimed_at,
        latitude,
        longitude,
        geofence_m,
        member_active,
        provider_active,
        blocked,
        open_entry,
    ) = row
    mine: dict[str, Any] = {"home_id": home_id, "extra": {"grant_id": request.grant_id}}
    schedule = schedule_of(kind, timezone, starts_at, ends_at, windows, tx)
    lost = _lapsed(purpose, revoked_at, schedule, now, member_active, provider_active, blocked)
    if lost is not None:
        raise service.Denied(lost, **mine)
    limit = 1 if kind == ScheduleKind.ONCE else uses_limit
    if limit is not None and service._count(tx, _USES, (request.grant_id, limit)) >= limit:
        raise service.Denied(Reason.USES_EXHAUSTED, **mine)
    if require_geofence and not _at_home(latitude, longitude, geofence_m, request):
        raise service.Denied(Reason.OUTSIDE_GEOFENCE, **mine)
    if hub_id is None or not online or claimed_at is None:
        raise service.Denied(Reason.HUB_OFFLINE, **mine)
    if open_entry is not None:
        raise service.Denied(Reason.ENTRY_IN_PROGRESS, **mine)
    service._check_home_limit(tx, home_id, now, settings, {"home_id": home_id})
    return service._Target(
        None, home_id, access_point_id, slug, hub_id, None, None,
        purpose=str(purpose), grant_id=request.grant_id, until=schedule.open_until(now),
    )  # fmt: skip


def _lapsed(
    purpose: str, revoked_at: Any, schedule: Schedule, now: datetime, member_active: Any,
    provider_active: Any, blocked: Any,
) -> Reason | None:  # fmt: skip
    """Why a grant that is the visitor's does not let them in now, as far as it can change
    while their entry is open: for an appointment, the worker or the provider deactivated,
    or the provider blocked; the grant revoked; outside its schedule. None if it holds."""
    if purpose == Purpose.SERVICE:
        if not member_active or not provider_active:
            return Reason.VISITOR_INACTIVE
        if blocked:
            return Reason.PROVIDER_BLOCKED
    if revoked_at is not None:
        return Reason.GRANT_REVOKED
    if not schedule.allows(now):
        return Reason.OUTSIDE_SCHEDULE
    return None


def proof_denial(tx: Tx, *, visitor: Principal, grant_id: str, now: datetime) -> Reason | None:
    """Why a visit's entry may no longer unlock when the phone's proof comes, as the
    decision would say now (`service.unlock_with_proof`): the grant given to someone else
    (`not_granted`), or lapsed (`_lapsed`). Its uses are not counted again: this
    entry is one of them. None when nothing changed."""
    row = tx.one(_GRANT_NOW, (grant_id,))
    if row is None or row[0] != visitor.id:
        return Reason.NOT_GRANTED
    _, purpose, kind, timezone, starts_at, ends_at, windows, revoked_at, *standing = row
    schedule = schedule_of(kind, timezone, starts_at, ends_at, windows, tx)
    return _lapsed(purpose, revoked_at, schedule, now, *standing)


def _at_home(latitude: float, longitude: float, geofence_m: float, request: VisitRequest) -> bool:
    if request.latitude is None or request.longitude is None or request.accuracy_m is None:
        return False
    position = service.EntryRequest("", "", request.latitude, request.longitude, request.accuracy_m)
    return service._inside_geofence(latitude, longitude, geofence_m, position)


def _deny(
    tx: Tx,
    visitor: Principal,
    request: VisitRequest,
    denial: service.Denied,
    home_id: str | None,
    now: datetime,
) -> service.EntryView:
    entry = service.EntryView(new_id("ent"), EntryState.DENIED, denial.reason, None, home_id,
                              None, now)  # fmt: skip
    # Only a grant that is the visitor's is named on the entry (and so shown to that
    # home's resident); a probe of someone else's grant is recorded without it.
    grant_id = request.grant_id if denial.reason != Reason.NOT_GRANTED else None
    purpose = Purpose.SERVICE if visitor.role == PrincipalRole.WORKER else Purpose.GUEST
    service._insert_entry(tx, entry, visitor.id, now, purpose=purpose, grant_id=grant_id)
    append_tx(
        tx,
        at=now,
        actor=visitor.actor,
        action="entry:denied",
        subject=entry.id,
        home_id=home_id,
        data={"reason": str(denial.reason), "grant_id": request.grant_id, **denial.extra},
    )
    outbox.entry_changed(tx, entry_id=entry.id, state=entry.state, at=now, home_id=home_id)
    return entry
