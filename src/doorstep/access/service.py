"""The courier entry: every check in DESIGN's order, then one signed grant, one command.

`decide` runs as one job on the writer thread (see `doorstep.sql`): it authenticates the
courier's token, reads the delivery, package, home, door, hub and any open entry in one
query, checks, and either records a denial (state `denied`, a reason code, no grant) or
creates the entry, signs a grant bound to it and returns the unlock command, which the
caller publishes once the transaction has committed. The checks and the insert run in the
same transaction, so two couriers cannot both open one door; a unique index on open
entries per access point enforces it in the database as well. On PostgreSQL decisions
of several writers run concurrently: one that finds the door taken by that index when
it inserts (the other decision committed after this one's check) is denied
`entry_in_progress`, on record, like one whose check saw the door taken.

`apply_reply` and `apply_hub_event` move entries forward as the hub reports; an entry
never moves backwards. Every change queues its carrier webhook and resident email in the
same transaction (`doorstep.notify.outbox`). These functions are plain SQL because they
are the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.orm import Session

from doorstep.access.geo import distance_m
from doorstep.access.models import OPEN_STATES, PROGRESS, Entry, EntryState
from doorstep.accounts.models import PrincipalKind, Role
from doorstep.accounts.service import Principal
from doorstep.audit.service import append_tx
from doorstep.db import ordered_hex, ordered_id
from doorstep.deliveries.models import Delivery, DeliveryStatus
from doorstep.errors import Conflict, Forbidden, NotAuthenticated, NotFound
from doorstep.homes.models import ApprovalMode, ClosureKind, Home
from doorstep.notify import outbox
from doorstep.permissions import PrincipalRole
from doorstep.protocol import PROTOCOL_VERSION, Reason, pop
from doorstep.protocol.grants import GrantClaims, GrantSigner, audience_for, new_token_id
from doorstep.protocol.messages import (
    Alert,
    Command,
    CommandKind,
    Event,
    EventKind,
    Reply,
    b64decode,
    b64encode,
)
from doorstep.security import token_digest
from doorstep.settings import EntrySettings
from doorstep.sql import Tx

MAX_POSITION_ACCURACY_M = 100.0
UNLOCK_SCOPE = ("unlock",)
LOCK_SCOPE = ("lock",)
_OPEN = ", ".join(f"'{state}'" for state in OPEN_STATES)
# Every state change is conditional on the states it may move from, in its UPDATE: the
# hot writer process and the service's writer thread write concurrently on PostgreSQL,
# and what one of them read may have changed by the time its UPDATE holds the row.
_UNSTARTED = (EntryState.AWAITING_APPROVAL, EntryState.AUTHORIZED)
_NOT_AWAITING = "this entry is no longer awaiting approval"

ENTRY_COLUMNS = (
    "e.id, e.state, e.reason, e.delivery_id, e.home_id, e.hub_id, e.created_at, e.unlocked_at,"
    " e.opened_at, e.closed_at, e.locked_at, e.done_at"
)

_COURIER = (
    "SELECT u.id, u.role, u.carrier_id, u.active, t.expires_at FROM access_tokens t"
    " JOIN users u ON u.id = t.principal_id WHERE t.digest = ? AND t.principal_kind = 'user'"
)

# Everything the checks need, in one round trip. The open states are written out (not
# bound) so that SQLite can use the partial index of open entries per access point.
_TARGET = (
    "SELECT d.courier_id, d.carrier_id, d.status, d.window_start, d.window_end, d.home_id,"  # noqa: S608
    " d.access_point_id, p.id, p.delivered_at, h.latitude, h.longitude, h.geofence_m,"
    " h.in_home_enabled, ap.slug, ap.hub_id, hub.online, hub.claimed_at,"
    " h.timezone, h.allowed_weekdays, h.approval_mode, h.approval_timeout_seconds,"
    f" (SELECT e.id FROM entries e WHERE e.access_point_id = d.access_point_id"
    f"  AND e.state IN ({_OPEN}) LIMIT 1)"
    " FROM deliveries d JOIN homes h ON h.id = d.home_id"
    " JOIN access_points ap ON ap.id = d.access_point_id"
    " LEFT JOIN hubs hub ON hub.id = ap.hub_id"
    " LEFT JOIN packages p ON p.delivery_id = d.id AND p.barcode = ?"
    " WHERE d.id = ?"
)

_INSERT_ENTRY = (
    "INSERT INTO entries (id, delivery_id, package_id, home_id, access_point_id, hub_id,"
    " courier_id, state, reason, token_id, command_id, grant_expires_at, created_at,"
    " updated_at, grant_token, device_key_id, purpose, grant_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# An open entry goes in only while its door has none. The checks read the door free, but
# on PostgreSQL a concurrent decision (another process, or the other writer) may have
# taken it since: the insert waits for that one's commit, then adds nothing.
_INSERT_OPEN_ENTRY = (
    f"{_INSERT_ENTRY} ON CONFLICT (access_point_id) WHERE state IN ({_OPEN}) DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class EntryRequest:
    delivery_id: str
    barcode: str
    latitude: float
    longitude: float
    accuracy_m: float
    nobody_answered: bool = True
    device_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class EntryView:
    """An entry as the API shows it."""

    id: str
    state: str
    reason: str | None
    delivery_id: str | None
    home_id: str | None
    hub_id: str | None
    created_at: datetime
    unlocked_at: datetime | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    locked_at: datetime | None = None
    done_at: datetime | None = None
    # Proof of possession: the hub's challenge and the exact bytes the phone signs
    # (`protocol.pop.message`), both base64url, once the hub has answered.
    challenge: str | None = None
    to_sign: str | None = None
    alert: str | None = None


@dataclass(frozen=True, slots=True)
class EntryDecision:
    entry: EntryView
    command: Command | None
    hub_id: str | None = None

    @property
    def authorized(self) -> bool:
        return self.command is not None


@dataclass(frozen=True, slots=True)
class _Target:
    """What an authorized entry is for: a delivery's parcel, or a visit on a grant."""

    delivery_id: str | None
    home_id: str
    access_point_id: str
    slug: str
    hub_id: str
    package_id: str | None
    barcode: str | None
    approval_mode: ApprovalMode = ApprovalMode.AUTO
    approval_timeout_seconds: int = 120
    device_key_id: str | None = None
    pop_key: bytes | None = None
    purpose: str = "delivery"
    grant_id: str | None = None
    # The end of the window this entry is allowed in (a delivery's, with its tolerance; a
    # visit's schedule): no grant for it outlives that, however long grants live.
    until: datetime | None = None

    def audit_data(self) -> dict[str, Any]:
        if self.purpose != "delivery":
            return {"purpose": self.purpose, "grant_id": self.grant_id}
        return {"delivery_id": self.delivery_id, "barcode": self.barcode}


@dataclass
class Denied(Exception):
    reason: Reason
    delivery_id: str | None = None
    home_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def decide(
    tx: Tx,
    *,
    token: str,
    request: EntryRequest,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
    entry_id: str | None = None,
) -> EntryDecision:
    """Authenticate the courier, check everything, record the outcome (a writer job).
    `entry_id` is the id the new entry gets, made by a caller that must be able to name
    the entry even if this job's answer is lost (`doorstep.hotwriter`)."""
    new_id = entry_id or ordered_id("ent")
    courier, active = _courier(tx, token, now)
    try:
        if not active:
            raise Denied(Reason.COURIER_INACTIVE)
        _check_courier_limits(tx, courier, now, settings)
        _check_not_held(tx, courier)
        pop_key = _device_key(tx, courier, request.device_key_id, settings)
        target = _check(tx, courier, request, now, settings)
        if not request.nobody_answered:
            raise Denied(
                Reason.SOMEONE_ANSWERED, delivery_id=target.delivery_id, home_id=target.home_id
            )
        target = replace(target, device_key_id=request.device_key_id, pop_key=pop_key)
        if target.approval_mode == ApprovalMode.ASK:
            return EntryDecision(_await_approval(tx, courier, target, now, new_id=new_id), None)
        return _authorize(tx, courier, target, now, settings, signer, new_id=new_id)
    except Denied as denial:
        return EntryDecision(_deny(tx, courier, request, denial, now, new_id=new_id), None)


def _device_key(
    tx: Tx, courier: Principal, key_id: str | None, settings: EntrySettings
) -> bytes | None:
    """The courier's registered, unrevoked phone key the request names, or none when
    proof of possession is switched off and no key is named."""
    if key_id is None:
        if settings.require_proof_of_possession:
            raise Denied(Reason.DEVICE_KEY_REQUIRED)
        return None
    row = tx.one(
        "SELECT point FROM device_keys WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        (key_id, courier.id),
    )
    if row is None:
        raise Denied(Reason.DEVICE_KEY_REQUIRED, extra={"device_key_id": key_id})
    return bytes(row[0])


def _courier(tx: Tx, token: str, now: datetime) -> tuple[Principal, bool]:
    """The token's courier and whether the account is active (a suspended courier's
    attempt is recorded and denied, not just refused)."""
    row = tx.one(_COURIER, (token_digest(token),))
    if row is None or (tx.parse_time(row[4]) or now) <= now:
        raise NotAuthenticated("token is unknown or expired")
    if row[1] != Role.COURIER:
        raise Forbidden("only couriers may request entries")
    return Principal(PrincipalKind.USER, str(row[0]), PrincipalRole.COURIER, row[2]), bool(row[3])


# Each count stops at its limit (the LIMIT inside), so a busy courier costs no more to
# check than a quiet one; the denials have their own partial index (migration 0008).
_RECENT = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM entries WHERE courier_id = ? AND created_at > ?"
    " LIMIT ?) AS recent"
)
_DENIALS = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM entries WHERE courier_id = ? AND state = 'denied'"
    " AND created_at > ? AND reason <> 'too_many_attempts' LIMIT ?) AS denials"
)
_HOME_RECENT = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM entries WHERE home_id = ? AND created_at > ?"
    " LIMIT ?) AS recent"
)


def _check_courier_limits(
    tx: Tx, courier: Principal, now: datetime, settings: EntrySettings
) -> None:
    """Too many requests in a minute, or too many denials lately (guessing barcodes,
    probing homes): refuse until the window has passed. Counted from the entries table,
    so the limits hold across restarts and service processes."""
    per_minute, lockout = settings.courier_attempts_per_minute, settings.lockout_minutes
    minute_ago = tx.time(now - timedelta(minutes=1))
    if _count(tx, _RECENT, (courier.id, minute_ago, per_minute)) >= per_minute:
        raise Denied(Reason.TOO_MANY_ATTEMPTS, extra={"limit": "courier_per_minute"})
    window_start = tx.time(now - timedelta(minutes=lockout))
    denials = settings.courier_denials_before_lockout
    if _count(tx, _DENIALS, (courier.id, window_start, denials)) >= denials:
        raise Denied(Reason.TOO_MANY_ATTEMPTS, extra={"limit": "courier_lockout"})


def _count(tx: Tx, sql: str, params: tuple[Any, ...]) -> int:
    row = tx.one(sql, params)
    return int(row[0]) if row else 0


def _check_not_held(tx: Tx, courier: Principal) -> None:
    """A courier whose last entry did not relock makes no other in-home stop until it is
    resolved: the door is verified locked (the entry ends), or an operator closes it."""
    open_states = ", ".join(f"'{state}'" for state in OPEN_STATES)
    held = tx.one(
        "SELECT id FROM entries WHERE courier_id = ? AND alert = 'relock_failed'"  # noqa: S608
        f" AND state IN ({open_states}) LIMIT 1",
        (courier.id,),
    )
    if held is not None:
        raise Denied(Reason.COURIER_HELD, extra={"held_by": held[0]})


def _check_home_limit(
    tx: Tx, home_id: str, now: datetime, settings: EntrySettings, mine: dict[str, Any]
) -> None:
    limit = settings.home_attempts_per_hour
    hour_ago = tx.time(now - timedelta(hours=1))
    if _count(tx, _HOME_RECENT, (home_id, hour_ago, limit)) >= limit:
        raise Denied(Reason.TOO_MANY_ATTEMPTS, extra={"limit": "home_per_hour"}, **mine)


def _check(
    tx: Tx, courier: Principal, request: EntryRequest, now: datetime, settings: EntrySettings
) -> _Target:
    row = tx.one(_TARGET, (request.barcode, request.delivery_id))
    if row is None or row[0] != courier.id or row[1] != courier.carrier_id:
        raise Denied(Reason.COURIER_NOT_ASSIGNED)
    (
        _,
        _,
        status,
        window_start,
        window_end,
        home_id,
        access_point_id,
        package_id,
        delivered_at,
        latitude,
        longitude,
        geofence_m,
        in_home,
        slug,
        hub_id,
        online,
        claimed_at,
        timezone,
        allowed_weekdays,
        approval_mode,
        approval_timeout,
        open_entry,
    ) = row
    mine = {"delivery_id": request.delivery_id, "home_id": home_id}
    if package_id is None:
        raise Denied(Reason.PACKAGE_UNKNOWN, **mine)
    if delivered_at is not None or status != DeliveryStatus.BOOKED:
        raise Denied(Reason.PACKAGE_ALREADY_DELIVERED, **mine)
    if not in_home or approval_mode == ApprovalMode.NEVER:
        raise Denied(Reason.IN_HOME_DISABLED, **mine)
    _check_day(tx, home_id, now.astimezone(ZoneInfo(timezone)).date(), allowed_weekdays, mine)
    tolerance = timedelta(seconds=settings.window_tolerance_seconds)
    start, end = tx.parse_time(window_start), tx.parse_time(window_end)
    assert start is not None and end is not None
    if not start - tolerance <= now <= end + tolerance:
        raise Denied(Reason.OUTSIDE_WINDOW, **mine)
    if not _inside_geofence(latitude, longitude, geofence_m, request):
        raise Denied(Reason.OUTSIDE_GEOFENCE, **mine)
    if hub_id is None or not online or claimed_at is None:
        raise Denied(Reason.HUB_OFFLINE, **mine)
    if open_entry is not None:
        raise Denied(Reason.ENTRY_IN_PROGRESS, **mine)
    _check_home_limit(tx, home_id, now, settings, mine)
    return _Target(
        request.delivery_id,
        home_id,
        access_point_id,
        slug,
        hub_id,
        package_id,
        request.barcode,
        ApprovalMode(approval_mode),
        int(approval_timeout),
        until=end + tolerance,
    )


_CLOSED_REASONS = {
    ClosureKind.NOT_TODAY: Reason.NOT_TODAY,
    ClosureKind.VACATION: Reason.VACATION,
    ClosureKind.BLACKOUT: Reason.BLACKOUT_DAY,
}


def _check_day(
    tx: Tx, home_id: str, today: date, allowed_weekdays: int, mine: dict[str, Any]
) -> None:
    """The resident's days: allowed weekdays, then vacation, blackout and "not today"
    closures, all in the home's own time zone."""
    if not allowed_weekdays & (1 << today.weekday()):
        raise Denied(Reason.WEEKDAY_NOT_ALLOWED, **mine)
    # MIN, not ORDER BY ... LIMIT 1: the same answer when closures overlap, without the
    # temporary sort SQLite builds for the ORDER BY on every request.
    closure = tx.one(
        "SELECT MIN(kind) FROM home_closures WHERE home_id = ? AND first_day <= ?"
        " AND last_day >= ?",
        (home_id, tx.day(today), tx.day(today)),
    )
    if closure is not None and closure[0] is not None:
        raise Denied(_CLOSED_REASONS.get(closure[0], Reason.BLACKOUT_DAY), **mine)


def _inside_geofence(
    latitude: float, longitude: float, geofence_m: float, request: EntryRequest
) -> bool:
    # A fix less precise than 100 m cannot place anyone at a door; within that, the
    # reported accuracy widens the fence (the courier is somewhere in that circle).
    if not 0 <= request.accuracy_m <= MAX_POSITION_ACCURACY_M:
        return False
    distance = distance_m(latitude, longitude, request.latitude, request.longitude)
    return distance <= geofence_m + request.accuracy_m


def _authorize(
    tx: Tx,
    courier: Principal,
    target: _Target,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
    *,
    entry_id: str | None = None,
    new_id: str | None = None,
) -> EntryDecision:
    """Sign a grant for this entry and return the unlock command to publish. With
    `entry_id`, an entry that was awaiting the resident's approval is authorized;
    otherwise a new entry is made (with `new_id`, if given), or, when a concurrent
    decision took the door meanwhile, nothing is written and `Denied` is raised."""
    token_id = new_token_id()
    issued = int(now.timestamp())
    expires = issued + settings.grant_ttl_seconds
    if target.until is not None:
        expires = min(expires, int(target.until.timestamp()))
    entry = EntryView(
        entry_id or new_id or ordered_id("ent"),
        EntryState.AUTHORIZED,
        None,
        target.delivery_id,
        target.home_id,
        target.hub_id,
        now,
    )
    command_id = ordered_hex()
    grant_expires = tx.time(datetime.fromtimestamp(expires, now.tzinfo))
    claims = GrantClaims(
        audience=audience_for(target.hub_id, target.slug),
        not_before=issued,
        expires=expires,
        issued_at=issued,
        token_id=token_id,
        scope=UNLOCK_SCOPE,
        entry_id=entry.id,
        pop_key=target.pop_key,
    )
    grant = b64encode(signer.sign(claims))
    # A grant bound to a phone key is kept, to send again with the phone's proof.
    kept = grant if target.pop_key is not None else None
    if entry_id is None:
        _insert_entry(
            tx, entry, courier.id, now, target=target, token_id=token_id.hex(),
            command_id=command_id, grant_expires=grant_expires, grant=kept,
        )  # fmt: skip
    else:
        approved = tx.run(
            "UPDATE entries SET state = ?, token_id = ?, command_id = ?, grant_expires_at = ?,"
            " updated_at = ?, grant_token = ? WHERE id = ? AND state = 'awaiting_approval'",
            (entry.state, token_id.hex(), command_id, grant_expires, tx.time(now), kept, entry_id),
        )
        if not approved:  # ended meanwhile (a keypad visit at the door), nothing written
            raise Conflict(_NOT_AWAITING)
    command = Command(
        v=PROTOCOL_VERSION,
        command_id=command_id,
        # With a phone key, the hub first answers a challenge; the unlock follows the proof.
        kind=CommandKind.CHALLENGE if target.pop_key is not None else CommandKind.UNLOCK,
        not_after=issued + settings.command_expiry_seconds,
        entry_id=entry.id,
        access_point=target.slug,
        grant=grant,
    )
    append_tx(
        tx,
        at=now,
        actor=courier.actor,
        action="entry:authorized",
        subject=entry.id,
        home_id=target.home_id,
        data={
            **target.audit_data(),
            "kid": signer.kid,
            "token_id": token_id.hex(),
            "expires": expires,
        },
    )
    outbox.entry_changed(tx, entry_id=entry.id, state=entry.state, at=now, home_id=target.home_id)
    return EntryDecision(entry, command, target.hub_id)


def _insert_entry(
    tx: Tx,
    entry: EntryView,
    courier_id: str,
    now: datetime,
    *,
    target: _Target | None = None,
    token_id: str | None = None,
    command_id: str | None = None,
    grant_expires: Any = None,
    grant: str | None = None,
    purpose: str | None = None,
    grant_id: str | None = None,
) -> None:
    """Record a new entry: denied (no target), awaiting approval, or authorized. A denied
    visit names its purpose and grant without a target. An open entry (with a target)
    whose door a concurrent decision took meanwhile is not recorded: `Denied`
    (`entry_in_progress`) is raised, for the caller to record as its denial."""
    added = tx.run(
        _INSERT_ENTRY if target is None else _INSERT_OPEN_ENTRY,
        (
            entry.id,
            entry.delivery_id,
            target.package_id if target else None,
            entry.home_id,
            target.access_point_id if target else None,
            entry.hub_id,
            courier_id,
            entry.state,
            entry.reason,
            token_id,
            command_id,
            grant_expires,
            tx.time(now),
            tx.time(now),
            grant,
            target.device_key_id if target else None,
            target.purpose if target else (purpose or "delivery"),
            target.grant_id if target else grant_id,
        ),
    )
    if target is not None and not added:
        extra = {"grant_id": target.grant_id} if target.grant_id else {}
        raise Denied(Reason.ENTRY_IN_PROGRESS, target.delivery_id, target.home_id, extra)


def _await_approval(
    tx: Tx, courier: Principal, target: _Target, now: datetime, *, new_id: str | None = None
) -> EntryView:
    """Every check passed and the resident asks to approve each entry: record the entry
    as awaiting approval (it holds the door, so no second entry can start) and ask."""
    entry = EntryView(
        new_id or ordered_id("ent"),
        EntryState.AWAITING_APPROVAL,
        None,
        target.delivery_id,
        target.home_id,
        target.hub_id,
        now,
    )
    deadline = now + timedelta(seconds=target.approval_timeout_seconds)
    _insert_entry(tx, entry, courier.id, now, target=target)
    tx.run("UPDATE entries SET approval_deadline = ? WHERE id = ?", (tx.time(deadline), entry.id))
    append_tx(
        tx,
        at=now,
        actor=courier.actor,
        action="entry:awaiting_approval",
        subject=entry.id,
        home_id=target.home_id,
        data={
            "delivery_id": target.delivery_id,
            "barcode": target.barcode,
            "deadline": deadline.isoformat(),
        },
    )
    outbox.entry_changed(tx, entry_id=entry.id, state=entry.state, at=now, home_id=target.home_id)
    return entry


_AWAITING = (
    "SELECT e.courier_id, e.delivery_id, e.home_id, e.access_point_id, e.hub_id,"
    " e.package_id, e.approval_deadline, ap.slug, p.barcode, h.owner_id, hub.online,"
    " e.device_key_id, dk.point, u.active, d.window_end"
    " FROM entries e JOIN homes h ON h.id = e.home_id JOIN users u ON u.id = e.courier_id"
    " JOIN access_points ap ON ap.id = e.access_point_id"
    " LEFT JOIN deliveries d ON d.id = e.delivery_id"
    " LEFT JOIN packages p ON p.id = e.package_id"
    " LEFT JOIN hubs hub ON hub.id = e.hub_id"
    " LEFT JOIN device_keys dk ON dk.id = e.device_key_id AND dk.revoked_at IS NULL"
    " WHERE e.id = ? AND e.state = 'awaiting_approval'"
)


def answer_approval(
    tx: Tx,
    *,
    resident: Principal,
    entry_id: str,
    approve: bool,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
) -> EntryDecision:
    """The home's resident approves (the grant is issued now) or declines an entry that
    is awaiting approval. Another resident's entry is not found; an entry no longer
    awaiting (answered, timed out) is a conflict. An approval is declined instead when
    the hub went offline, the courier was suspended, the phone key revoked or the
    delivery's window closed meanwhile."""
    row = tx.one(_AWAITING, (entry_id,))
    if row is None:
        current = tx.one(
            "SELECT h.owner_id FROM entries e JOIN homes h ON h.id = e.home_id WHERE e.id = ?",
            (entry_id,),
        )
        if current is None or current[0] != resident.id:
            raise NotFound("no such entry")
        raise Conflict(_NOT_AWAITING)
    courier_id, delivery_id, home_id, point_id, hub_id, package_id, deadline = row[:7]
    slug, barcode, owner_id, online, device_key_id, point, courier_active, window_end = row[7:]
    if owner_id != resident.id:
        raise NotFound("no such entry")
    deadline_at = tx.parse_time(deadline)
    if not approve or (deadline_at is not None and deadline_at <= now) or not online:
        reason = (
            Reason.RESIDENT_DECLINED
            if not approve
            else Reason.HUB_OFFLINE
            if not online
            else Reason.APPROVAL_TIMEOUT
        )
        return _declined(tx, entry_id, home_id, reason, now, actor=resident.actor)
    courier = Principal(PrincipalKind.USER, courier_id, PrincipalRole.COURIER, None)
    if not courier_active:  # suspended while the resident was asked
        return _declined(tx, entry_id, home_id, Reason.COURIER_INACTIVE, now, actor=resident.actor)
    until = tx.parse_time(window_end)
    if until is not None:
        until += timedelta(seconds=settings.window_tolerance_seconds)
        if now > until:  # the delivery's window closed while the resident was asked
            return _declined(
                tx, entry_id, home_id, Reason.OUTSIDE_WINDOW, now, actor=resident.actor
            )
    if device_key_id is not None and point is None:  # the phone was revoked meanwhile
        return _declined(
            tx, entry_id, home_id, Reason.DEVICE_KEY_REQUIRED, now, actor=resident.actor
        )
    target = _Target(
        delivery_id, home_id, point_id, slug, hub_id, package_id, barcode,
        device_key_id=device_key_id, pop_key=bytes(point) if point is not None else None,
        until=until,
    )  # fmt: skip
    decision = _authorize(tx, courier, target, now, settings, signer, entry_id=entry_id)
    view = load_entry(tx, entry_id)
    assert view is not None
    return EntryDecision(view, decision.command, decision.hub_id)


def abort_entry(
    tx: Tx,
    *,
    courier: Principal,
    entry_id: str,
    why: str,
    note: str,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
) -> EntryDecision:
    """The courier stops an entry at any point, without penalty. Before the door was
    unlocked it ends at once. After, the hub still verifies the relock, and the entry
    ends `aborted` rather than `done`; the parcel is not marked delivered.

    While the door has not been opened and an unlock was sent (the entry `unlocked`,
    or `authorized` and not waiting for the phone's proof), the answer carries a lock
    command for the caller to publish once committed: the hub
    relocks at once rather than at the lock's auto-relock, and an unlock still on its
    way to the hub is followed right away by this lock, which names the entry (the hub
    lets a lock end the entry it names, and waits for its unlock to report first). Its
    request is in the audit log (`door:lock_requested`), its outcome comes from the
    hub's event as for the resident's "Lock now".

    Asked again while the entry is still open (a second tap, a retry after a lost
    answer), it answers the entry as it is: nothing is recorded or sent again."""
    row = tx.one(
        "SELECT e.state, e.home_id, e.courier_id, e.hub_id, ap.id, ap.slug, e.challenge,"
        " e.abort_reason FROM entries e LEFT JOIN access_points ap ON ap.id = e.access_point_id"
        " WHERE e.id = ?",
        (entry_id,),
    )
    if row is None or row[2] != courier.id:
        raise NotFound("no such entry")
    state, home_id, _, hub_id, point_id, slug, challenge, asked = row
    if state not in OPEN_STATES:
        raise Conflict(f"this entry has already ended ({state})")
    if asked is not None or not tx.run(
        "UPDATE entries SET abort_reason = ?, updated_at = ?"  # noqa: S608
        f" WHERE id = ? AND state IN ({_OPEN}) AND abort_reason IS NULL",
        (why, tx.time(now), entry_id),
    ):  # asked before, or the hub's writer ended it meanwhile
        return _aborted_before(tx, entry_id, state)
    append_tx(tx, at=now, actor=courier.actor, action="entry:abort_requested",
              subject=entry_id, home_id=home_id, data={"why": why, "note": note})  # fmt: skip
    if state in _UNSTARTED:
        # Unlocked meanwhile, it stays so: the hub verifies the relock and ends it aborted.
        _abort(tx, entry_id, state, home_id, now, actor=courier.actor,
               reason=Reason.COURIER_ABORTED, since=_UNSTARTED)  # fmt: skip
    command = None
    # Authorized with the hub's challenge in hand, no unlock was sent (it follows the
    # phone's proof, which now never comes): nothing to relock.
    unlock_sent = state == EntryState.UNLOCKED or (
        state == EntryState.AUTHORIZED and challenge is None
    )
    if unlock_sent and hub_id and slug:
        command = lock_command(hub_id, slug, entry_id, new_token_id(), now, settings, signer)
        append_tx(
            tx, at=now, actor="system", action="door:lock_requested",
            subject=point_id, home_id=home_id,
            data={"door": slug, "command_id": command.command_id, "kid": signer.kid,
                  "ends_entry": entry_id, "why": Reason.COURIER_ABORTED},
        )  # fmt: skip
    view = load_entry(tx, entry_id)
    assert view is not None
    return EntryDecision(view, command, hub_id if command is not None else None)


def _aborted_before(tx: Tx, entry_id: str, read: str) -> EntryDecision:
    """A repeated abort: the entry as it is, with no command, while it is still open."""
    view = load_entry(tx, entry_id)
    if view is None or view.state not in OPEN_STATES:
        raise Conflict(f"this entry has already ended ({view.state if view else read})")
    return EntryDecision(view, None)


def lock_command(
    hub_id: str, slug: str, grant_entry: str, token_id: bytes, now: datetime,
    settings: EntrySettings, signer: GrantSigner,
) -> Command:  # fmt: skip
    """A lock command for `slug` on `hub_id`, its grant (scope "lock") naming
    `grant_entry`: the entry it may end at the hub, or a fresh id that names none."""
    issued = int(now.timestamp())
    # The grant lives as long as the command: a lock is done now or not at all.
    expires = issued + settings.command_expiry_seconds
    claims = GrantClaims(
        audience=audience_for(hub_id, slug),
        not_before=issued,
        expires=expires,
        issued_at=issued,
        token_id=token_id,
        scope=LOCK_SCOPE,
        entry_id=grant_entry,
    )
    return Command(
        v=PROTOCOL_VERSION,
        command_id=ordered_hex(),
        kind=CommandKind.LOCK,
        not_after=expires,
        entry_id=grant_entry,
        access_point=slug,
        grant=b64encode(signer.sign(claims)),
    )


def _state(tx: Tx, entry_id: str, read: str) -> str:
    """The entry's state now, after a conditional update found it moved from `read` (a
    race with the other writer; never on the normal path)."""
    row = tx.one("SELECT state FROM entries WHERE id = ?", (entry_id,))
    return str(row[0]) if row is not None else read


def _declined(
    tx: Tx, entry_id: str, home_id: str | None, reason: Reason, now: datetime, *, actor: str
) -> EntryDecision:
    """The resident's answer declines the entry, unless it stopped awaiting meanwhile."""
    if not _decline(tx, entry_id, home_id, reason, now, actor=actor):
        raise Conflict(_NOT_AWAITING)
    view = load_entry(tx, entry_id)
    assert view is not None
    return EntryDecision(view, None)


def _decline(
    tx: Tx, entry_id: str, home_id: str | None, reason: Reason, now: datetime, *, actor: str
) -> bool:
    """Decline an entry awaiting approval; returns False (and changes nothing) if it no
    longer awaits."""
    if not tx.run(
        "UPDATE entries SET state = ?, reason = ?, updated_at = ?"
        " WHERE id = ? AND state = 'awaiting_approval'",
        (EntryState.DECLINED, reason, tx.time(now), entry_id),
    ):
        return False
    append_tx(
        tx,
        at=now,
        actor=actor,
        action="entry:declined",
        subject=entry_id,
        home_id=home_id,
        data={"reason": reason},
    )
    outbox.entry_changed(tx, entry_id=entry_id, state=EntryState.DECLINED, at=now, home_id=home_id)
    return True


def _deny(
    tx: Tx,
    courier: Principal,
    request: EntryRequest,
    denial: Denied,
    now: datetime,
    *,
    new_id: str | None = None,
) -> EntryView:
    entry = EntryView(
        new_id or ordered_id("ent"),
        EntryState.DENIED,
        denial.reason,
        denial.delivery_id,
        denial.home_id,
        None,
        now,
    )
    _insert_entry(tx, entry, courier.id, now)
    append_tx(
        tx,
        at=now,
        actor=courier.actor,
        action="entry:denied",
        subject=entry.id,
        home_id=denial.home_id,
        data={
            "reason": str(denial.reason),
            "delivery_id": request.delivery_id,
            "barcode": request.barcode,
            **denial.extra,
        },
    )
    outbox.entry_changed(tx, entry_id=entry.id, state=entry.state, at=now, home_id=denial.home_id)
    return entry


def load_entry(tx: Tx, entry_id: str) -> EntryView | None:
    sql = (
        f"SELECT {ENTRY_COLUMNS}, e.challenge, ap.slug, e.alert FROM entries e"  # noqa: S608 - constant
        " LEFT JOIN access_points ap ON ap.id = e.access_point_id WHERE e.id = ?"
    )
    row = tx.one(sql, (entry_id,))
    if row is None:
        return None
    times = [tx.parse_time(value) for value in row[6:12]]
    created = times[0]
    assert created is not None
    challenge, slug = row[12], row[13]
    unlocked, opened, closed, locked, done = times[1:]
    return EntryView(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        created,
        unlocked_at=unlocked,
        opened_at=opened,
        closed_at=closed,
        locked_at=locked,
        done_at=done,
        challenge=challenge,
        to_sign=to_sign(row[0], row[5], slug, challenge),
        alert=row[14],
    )


def to_sign(
    entry_id: str, hub_id: str | None, slug: str | None, challenge: str | None
) -> str | None:
    """What the phone signs for this entry's live challenge (base64url), if there is one."""
    if challenge is None or hub_id is None or slug is None:
        return None
    return b64encode(pop.message(entry_id, audience_for(hub_id, slug), b64decode(challenge)))


# The entry, and what its decision checked that may change in the seconds between the
# hub's challenge and the phone's proof: the person, the delivery. A visit's grant is read
# again by `visits.proof_denial`: the hub's revocation list may not have the token yet.
_PROOF_ENTRY = (
    "SELECT e.courier_id, e.state, e.grant_token, e.challenge, e.hub_id, ap.slug, e.home_id,"
    " e.grant_id, e.purpose, u.active, d.courier_id, d.status, p.delivered_at"
    " FROM entries e JOIN access_points ap ON ap.id = e.access_point_id"
    " JOIN users u ON u.id = e.courier_id"
    " LEFT JOIN deliveries d ON d.id = e.delivery_id"
    " LEFT JOIN packages p ON p.id = e.package_id"
    " WHERE e.id = ?"
)


def _proof_denial(
    person: Principal, purpose: str, active: Any, delivery_courier: str | None,
    status: str | None, delivered_at: Any,
) -> Reason | None:  # fmt: skip
    """Why the entry may no longer unlock, as the decision's checks would say now: the
    person suspended, the delivery given to another courier, cancelled or delivered.
    None when nothing changed (a visit's grant is checked by `visits.proof_denial`)."""
    if not active:
        return Reason.COURIER_INACTIVE if purpose == "delivery" else Reason.VISITOR_INACTIVE
    if status is not None and delivery_courier != person.id:
        return Reason.COURIER_NOT_ASSIGNED
    if status is not None and (delivered_at is not None or status != DeliveryStatus.BOOKED):
        return Reason.PACKAGE_ALREADY_DELIVERED
    return None


def _deny_proof(
    tx: Tx, entry_id: str, home_id: str | None, reason: Reason, now: datetime, *, actor: str
) -> EntryDecision:
    """End an entry whose proof came after it lost its grounds: `denied`, its kept grant
    and the hub's challenge dropped (no unlock is ever sent for it), and on record."""
    if not tx.run(
        "UPDATE entries SET state = ?, reason = ?, grant_token = NULL, challenge = NULL,"
        " updated_at = ? WHERE id = ? AND state = 'authorized'",
        (EntryState.DENIED, reason, tx.time(now), entry_id),
    ):  # refused or ended by the hub's writer meanwhile
        current = _state(tx, entry_id, EntryState.AUTHORIZED)
        raise Conflict(f"this entry is not waiting for a proof ({current})")
    append_tx(tx, at=now, actor=actor, action="entry:denied", subject=entry_id,
              home_id=home_id, data={"reason": reason, "at": "proof"})  # fmt: skip
    outbox.entry_changed(tx, entry_id=entry_id, state=EntryState.DENIED, at=now, home_id=home_id)
    view = load_entry(tx, entry_id)
    assert view is not None
    return EntryDecision(view, None)


def unlock_with_proof(
    tx: Tx, *, courier: Principal, entry_id: str, proof: str, now: datetime,
    settings: EntrySettings,
) -> EntryDecision:  # fmt: skip
    """The phone's signature of the hub's challenge: send the unlock, with the grant kept
    for this entry. The hub checks the proof; the service only relays it, once it has
    checked again what may have changed since the grant was signed (`_proof_denial`,
    and a visit's grant): if the entry lost its grounds, it ends `denied` with that
    reason, and nothing is sent."""
    row = tx.one(_PROOF_ENTRY, (entry_id,))
    if row is None or row[0] != courier.id:
        raise NotFound("no such entry")
    _, state, grant, challenge, hub_id, slug, home_id, grant_id = row[:8]
    if state != EntryState.AUTHORIZED or grant is None:
        raise Conflict(f"this entry is not waiting for a proof ({state})")
    if challenge is None:
        raise Conflict("the door has not sent its challenge yet; wait for it")
    denial = _proof_denial(courier, *row[8:])
    if denial is None and grant_id is not None:
        from doorstep.access import visits  # that module builds on this one

        denial = visits.proof_denial(tx, visitor=courier, grant_id=grant_id, now=now)
    if denial is not None:
        return _deny_proof(tx, entry_id, home_id, denial, now, actor=courier.actor)
    command_id = ordered_hex()
    if not tx.run(
        "UPDATE entries SET command_id = ?, challenge = NULL, updated_at = ?"
        " WHERE id = ? AND state = 'authorized'",
        (command_id, tx.time(now), entry_id),
    ):  # refused or ended by the hub's writer meanwhile
        raise Conflict(f"this entry is not waiting for a proof ({_state(tx, entry_id, state)})")
    append_tx(
        tx, at=now, actor=courier.actor, action="entry:proof_presented", subject=entry_id,
        home_id=home_id,
    )  # fmt: skip
    command = Command(
        v=PROTOCOL_VERSION,
        command_id=command_id,
        kind=CommandKind.UNLOCK,
        not_after=int(now.timestamp()) + settings.command_expiry_seconds,
        entry_id=entry_id,
        access_point=slug,
        grant=grant,
        proof=proof,
    )
    view = load_entry(tx, entry_id)
    assert view is not None
    return EntryDecision(view, command, hub_id)


# --- the hub reports ---------------------------------------------------------------

_EVENT_STATES: dict[str, EntryState] = {
    EventKind.LOCK_UNLOCKED: EntryState.UNLOCKED,
    EventKind.DOOR_OPENED: EntryState.OPENED,
    EventKind.DOOR_CLOSED: EntryState.CLOSED,
    EventKind.LOCK_LOCKED: EntryState.LOCKED,
    EventKind.ENTRY_SECURED: EntryState.DONE,
}
_STAMPS = {
    EntryState.UNLOCKED: "unlocked_at",
    EntryState.OPENED: "opened_at",
    EntryState.CLOSED: "closed_at",
    EntryState.LOCKED: "locked_at",
    EntryState.DONE: "done_at",
}
# The states an entry may move from to each of those: all before it in PROGRESS.
_BEFORE = {
    target: ", ".join(f"'{state}'" for state in PROGRESS[: PROGRESS.index(target)])
    for target in _STAMPS
}


def apply_reply(tx: Tx, *, hub_id: str, reply: Reply, now: datetime) -> str | None:
    """A command's result moves its entry: unlocked, or refused with the hub's reason."""
    row = tx.one(
        "SELECT id, state, home_id FROM entries WHERE command_id = ? AND hub_id = ?",
        (reply.command_id, hub_id),
    )
    if row is None:
        return None
    entry_id, state, home_id = row
    if reply.challenge is not None:
        # The hub checked the grant and asks the phone to prove it holds the key.
        if reply.result == "ok" and state == EntryState.AUTHORIZED:
            tx.run(
                "UPDATE entries SET challenge = ? WHERE id = ? AND state = 'authorized'",
                (reply.challenge, entry_id),
            )
        return str(entry_id)
    reason = reply.reason or "hub_error"
    if reply.result == "ok":
        _advance(tx, entry_id, state, home_id, EntryState.UNLOCKED, now, actor=f"hub:{hub_id}")
    elif state == EntryState.AUTHORIZED and tx.run(
        "UPDATE entries SET state = ?, reason = ?, updated_at = ?"
        " WHERE id = ? AND state = 'authorized'",
        (EntryState.REFUSED, reason, tx.time(now), entry_id),
    ):
        append_tx(
            tx,
            at=now,
            actor=f"hub:{hub_id}",
            action="entry:refused",
            subject=entry_id,
            home_id=home_id,
            data={"reason": reason},
        )
        outbox.entry_changed(
            tx, entry_id=entry_id, state=EntryState.REFUSED, at=now, home_id=home_id
        )
    return str(entry_id)


def apply_hub_event(tx: Tx, *, hub_id: str, event: Event, now: datetime) -> None:
    if event.kind == EventKind.ENTRY_ALERT:
        _apply_alert(tx, hub_id, event, now)
        return
    if event.kind == EventKind.CLIP_RECORDED:
        _record_clip(tx, hub_id, event, now)
        return
    target_state = _EVENT_STATES.get(event.kind)
    entry_id = event.data.get("entry_id")
    if target_state is None or not isinstance(entry_id, str):
        return
    row = tx.one(
        "SELECT state, home_id, delivery_id, abort_reason FROM entries WHERE id = ? AND hub_id = ?",
        (entry_id, hub_id),
    )
    if row is None:
        if event.kind == EventKind.LOCK_UNLOCKED and event.data.get("method") == "keypad":
            _keypad_entry(tx, hub_id, entry_id, event, now)
        return
    state, home_id, delivery_id, abort_reason = row
    if target_state == EntryState.UNLOCKED and state not in OPEN_STATES:
        _unlocked_after_end(tx, hub_id, entry_id, state, home_id, event, now)
        return
    if target_state == EntryState.LOCKED and state == EntryState.OPENED:
        # A bolt thrown while the door stands open is not a relock (the hub raises
        # `locked_while_open`); the entry stays open until the door shuts and locks.
        return
    if target_state == EntryState.DONE and abort_reason is not None:
        # The courier called it off: the door is verified shut and locked, but no
        # delivery happened; the parcel goes the fallback way.
        _abort(
            tx, entry_id, state, home_id, now, actor=f"hub:{hub_id}",
            reason=Reason.COURIER_ABORTED,
        )  # fmt: skip
        return
    if target_state == EntryState.DONE and not event.data.get("opened"):
        _abort(tx, entry_id, state, home_id, now, actor=f"hub:{hub_id}")
        return
    moved = _advance(
        tx,
        entry_id,
        state,
        home_id,
        target_state,
        now,
        actor=f"hub:{hub_id}",
        data={"epoch": event.epoch, "seq": event.seq},
    )
    if moved and target_state == EntryState.DONE and delivery_id is not None:
        _mark_delivered(tx, entry_id, delivery_id, home_id, now)
    if not moved and target_state == EntryState.UNLOCKED:
        ended = _state(tx, entry_id, state)  # ended meanwhile by the other writer?
        if ended not in OPEN_STATES:
            _unlocked_after_end(tx, hub_id, entry_id, ended, home_id, event, now)


def _unlocked_after_end(
    tx: Tx, hub_id: str, entry_id: str, state: str, home_id: str | None, event: Event,
    now: datetime,
) -> None:  # fmt: skip
    """The unlock reached the hub after the entry ended here (the courier called it off,
    or the expiry sweep ended it, while the command was on its way): on record, beside
    the relock the hub was sent (`abort_entry`) or does by itself, and the resident is
    emailed, since their door was unlocked with no entry open. The entry stays ended."""
    append_tx(
        tx, at=now, actor=f"hub:{hub_id}", action="entry:unlocked_after_end",
        subject=entry_id, home_id=home_id,
        data={"state": state, "epoch": event.epoch, "seq": event.seq},
    )  # fmt: skip
    if home_id is not None:
        outbox.resident_mail(
            tx, event_id=f"{entry_id}.unlocked_after_end", event_type="entry.unlocked_after_end",
            home_id=home_id, subject=LATE_UNLOCK_MAIL[0], text=LATE_UNLOCK_MAIL[1], at=now,
            entry_id=entry_id,
        )  # fmt: skip


LATE_UNLOCK_MAIL = (
    "Alert: your door was unlocked after an entry had ended",
    "An unlock sent for an entry reached your door after that entry had already ended "
    "(called off, or expired). Your hub locks the door again by itself and reports when "
    "it has; the entry's history in the app shows each step.",
)


# The grant a keypad code belongs to, and the entry open at its door if any (at most one:
# `uq_entries_open_per_access_point`), in one round trip.
_KEYPAD_GRANT = (
    "SELECT g.home_id, g.access_point_id, g.purpose, COALESCE(g.grantee_id, g.created_by),"  # noqa: S608
    " e.id, e.state FROM access_grants g JOIN access_points ap ON ap.id = g.access_point_id"
    f" LEFT JOIN entries e ON e.access_point_id = g.access_point_id AND e.state IN ({_OPEN})"
    " WHERE g.id = ? AND ap.hub_id = ?"
)


_INSERT_KEYPAD_ENTRY = (
    "INSERT INTO entries (id, home_id, access_point_id, hub_id, courier_id, state,"
    " created_at, updated_at, unlocked_at, purpose, grant_id, method)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'keypad')"
)
_INSERT_OPEN_KEYPAD_ENTRY = (
    f"{_INSERT_KEYPAD_ENTRY} ON CONFLICT (access_point_id) WHERE state IN ({_OPEN}) DO NOTHING"
)


def _keypad_entry(
    tx: Tx, hub_id: str, entry_id: str, event: Event, now: datetime, *, again: bool = False
) -> None:
    """Someone opened the lock with a keypad code the hub programmed for a grant: the
    hub made the entry (its id, its relock watch); record it here, unlocked, under that
    grant's guest (or, for a code with no guest account, the resident who issued it).

    The hub makes a keypad entry only when it runs none at that door, and the unlock has
    happened: someone is going in. An entry still open here that the hub cannot know
    about (awaiting the resident's approval, or authorized with its unlock not acted on)
    ends with `entry_in_progress`, as a request made now would be refused. One past its
    unlock is kept, and the keypad unlock is only audited against it: ending it would
    pass for a verified relock that nobody saw (and release a courier held by its failed
    relock), while its own events, replayed from an earlier boot, may still end it.

    On PostgreSQL a decision of the other writer may take the door after the read here
    (it commits while this insert waits): then all of this runs `again`, with that entry
    in view, and the keypad entry is still recorded."""
    row = tx.one(_KEYPAD_GRANT, (event.data.get("grant_id"), hub_id))
    if row is None:
        return
    home_id, point_id, purpose, person, open_id, open_state = row
    actor = f"hub:{hub_id}"
    data = {"method": "keypad", "grant_id": event.data.get("grant_id"), "epoch": event.epoch,
            "seq": event.seq}  # fmt: skip
    if open_id is not None and open_state not in _UNSTARTED:
        append_tx(tx, at=now, actor=actor, action="entry:keypad_unlocked", subject=open_id,
                  home_id=home_id, data={**data, "entry_id": entry_id})  # fmt: skip
        return
    if open_id is not None:  # ends it, unless the service's writer ended it meanwhile
        _end_unstarted(tx, open_id, open_state, home_id, Reason.ENTRY_IN_PROGRESS, now,
                       actor=actor)  # fmt: skip
    # Once only: a second conflict (never seen) fails the ingest, and the hub sends again.
    insert = _INSERT_KEYPAD_ENTRY if again else _INSERT_OPEN_KEYPAD_ENTRY
    if not tx.run(
        insert,
        (entry_id, home_id, point_id, hub_id, person, EntryState.UNLOCKED, tx.time(now),
         tx.time(now), tx.time(now), purpose, data["grant_id"]),
    ):  # fmt: skip
        _keypad_entry(tx, hub_id, entry_id, event, now, again=True)
        return
    append_tx(tx, at=now, actor=actor, action="entry:unlocked", subject=entry_id,
              home_id=home_id, data=data)  # fmt: skip
    outbox.entry_changed(tx, entry_id=entry_id, state=EntryState.UNLOCKED, at=now,
                         home_id=home_id)  # fmt: skip


def _apply_alert(tx: Tx, hub_id: str, event: Event, now: datetime) -> None:
    """The hub says the door is not as it must be: flag the entry, record it, tell the
    resident and the carrier. A failed relock also holds the courier's next in-home stop
    until the entry is resolved (verified locked, or closed by an operator)."""
    entry_id, alert = event.data.get("entry_id"), event.data.get("alert")
    if not isinstance(entry_id, str) or alert not in set(Alert):
        return
    row = tx.one(
        "SELECT home_id, alert FROM entries WHERE id = ? AND hub_id = ?", (entry_id, hub_id)
    )
    if row is None:
        return
    data = {"alert": alert, "epoch": event.epoch, "seq": event.seq}
    # A door sensor that stopped answering mid-entry counts as open (fail closed), so a
    # `door_held_open` may be about a door nobody knows is open: the resident is told so.
    silent = alert == Alert.DOOR_HELD_OPEN and event.data.get("door_state") == _DOOR_UNKNOWN
    _flag(tx, entry_id, row[0], row[1], str(alert), now, actor=f"hub:{hub_id}",
          data={**data, "door_state": "unknown"} if silent else data,
          mail=outbox.SENSOR_SILENT if silent else None)  # fmt: skip


# The Matter DoorState value DoorUnspecifiedError: the door sensor cannot say.
_DOOR_UNKNOWN = 4


def _flag(
    tx: Tx,
    entry_id: str,
    home_id: str | None,
    current: str | None,
    alert: str,
    now: datetime,
    *,
    actor: str,
    data: dict[str, Any],
    mail: str | None = None,
) -> bool:
    """Flag the entry with `alert` (it carries `current`), audit it and tell the resident
    (the email `mail` of `outbox.ALERT_MAIL`, by default the alert's) and the carrier,
    once per entry and alert: a hub raises its alert again after a
    restart (it keeps them in memory), and the service's own `camera_lost` may come
    before the hub's. `relock_failed` is never replaced: it holds the courier
    (`_check_not_held`) while the door may stand unlocked. Returns whether it flagged.

    Every `serve` process hears every hub and watches every camera, so two may flag the
    same alert at once. On PostgreSQL the entry's row is locked and `current` read again
    under the lock: the second waits for the first to commit, then finds the alert
    flagged. (A SQLite writer holds the whole database: what its caller read holds.)"""
    if tx.postgres:
        row = tx.one("SELECT alert FROM entries WHERE id = ? FOR UPDATE", (entry_id,))
        current = row[0] if row is not None else current
    if alert == current or (current is not None and _alerted(tx, entry_id, alert)):
        return False
    if current != Alert.RELOCK_FAILED:
        tx.run(
            "UPDATE entries SET alert = ?, updated_at = ? WHERE id = ?",
            (alert, tx.time(now), entry_id),
        )
    append_tx(tx, at=now, actor=actor, action="entry:alert", subject=entry_id,
              home_id=home_id, data=data)  # fmt: skip
    outbox.entry_alert(tx, entry_id=entry_id, alert=alert, at=now, home_id=home_id, mail=mail)
    return True


def _alerted(tx: Tx, entry_id: str, alert: str) -> bool:
    """Whether the entry's audit log already has `alert`; asked only of an entry flagged
    before, whose column holds one alert of perhaps several."""
    rows = tx.all(
        "SELECT data FROM audit_events WHERE subject = ? AND action = 'entry:alert'",
        (entry_id,),
    )
    return any(_json(data).get("alert") == alert for (data,) in rows)


def _json(value: Any) -> Any:
    # SQLite hands JSON columns back as text; psycopg decodes them.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def camera_silent(tx: Tx, *, hub_id: str, entry_id: str, silent_for: float, now: datetime) -> bool:
    """The hub's camera heartbeats for an entry stopped (the hub, its link or its camera
    died mid-entry). If the entry is still open and not flagged `camera_lost` yet, flag
    it as the service's own finding. Heartbeats also stop when an entry ends normally;
    then this does nothing. Returns whether it flagged."""
    row = tx.one(
        "SELECT state, home_id, alert FROM entries WHERE id = ? AND hub_id = ?",
        (entry_id, hub_id),
    )
    if row is None or row[0] not in OPEN_STATES:
        return False
    data = {"alert": Alert.CAMERA_LOST, "seen_by": "service", "silent_for": round(silent_for, 1)}
    return _flag(tx, entry_id, row[1], row[2], Alert.CAMERA_LOST, now, actor="system", data=data)


def _record_clip(tx: Tx, hub_id: str, event: Event, now: datetime) -> None:
    """The hub holds the entry's clip: the audit log says so, with its time range."""
    entry_id = event.data.get("entry_id")
    row = tx.one("SELECT home_id FROM entries WHERE id = ? AND hub_id = ?", (entry_id, hub_id))
    if row is None:
        return
    keys = ("clip_id", "started_at", "ended_at", "duration", "complete")
    data = {key: event.data.get(key) for key in keys}
    append_tx(tx, at=now, actor=f"hub:{hub_id}", action="entry:clip_recorded",
              subject=str(entry_id), home_id=row[0], data=data)  # fmt: skip


def _advance(
    tx: Tx,
    entry_id: str,
    state: str,
    home_id: str | None,
    target: EntryState,
    now: datetime,
    *,
    actor: str,
    data: dict[str, Any] | None = None,
) -> bool:
    if state not in PROGRESS or PROGRESS.index(EntryState(state)) >= PROGRESS.index(target):
        return False
    # Any earlier state, not just the one read: a step the other writer took meanwhile
    # (a reply's `unlocked` before this `opened`) still lets this one apply.
    if not tx.run(
        f"UPDATE entries SET state = ?, updated_at = ?, {_STAMPS[target]} = ?"  # noqa: S608
        f" WHERE id = ? AND state IN ({_BEFORE[target]})",
        (target, tx.time(now), tx.time(now), entry_id),
    ):
        return False
    append_tx(
        tx,
        at=now,
        actor=actor,
        action=f"entry:{target}",
        subject=entry_id,
        home_id=home_id,
        data=data,
    )
    outbox.entry_changed(tx, entry_id=entry_id, state=target, at=now, home_id=home_id)
    return True


def _abort(
    tx: Tx,
    entry_id: str,
    state: str,
    home_id: str | None,
    now: datetime,
    *,
    actor: str,
    reason: Reason = Reason.DOOR_NEVER_OPENED,
    since: tuple[EntryState, ...] = OPEN_STATES,
) -> bool:
    """The entry ends without a delivery: the door relocked before it was ever opened,
    or the courier called it off (and the door is now verified shut and locked). Only
    from one of the states `since`; returns whether it ended."""
    if state not in since:
        return False
    states = ", ".join(f"'{open_state}'" for open_state in since)
    if not tx.run(
        "UPDATE entries SET state = ?, reason = ?, updated_at = ?, done_at = ?"  # noqa: S608
        f" WHERE id = ? AND state IN ({states})",
        (EntryState.ABORTED, reason, tx.time(now), tx.time(now), entry_id),
    ):
        return False
    append_tx(
        tx,
        at=now,
        actor=actor,
        action="entry:aborted",
        subject=entry_id,
        home_id=home_id,
        data={"reason": reason},
    )
    outbox.entry_changed(tx, entry_id=entry_id, state=EntryState.ABORTED, at=now, home_id=home_id)
    return True


def _mark_delivered(
    tx: Tx, entry_id: str, delivery_id: str, home_id: str | None, now: datetime
) -> None:
    tx.run(
        "UPDATE packages SET delivered_at = ? WHERE delivery_id = ? AND delivered_at IS NULL",
        (tx.time(now), delivery_id),
    )
    changed = tx.run(
        "UPDATE deliveries SET status = ? WHERE id = ? AND status = ?",
        (DeliveryStatus.DELIVERED, delivery_id, DeliveryStatus.BOOKED),
    )
    if changed:
        append_tx(
            tx,
            at=now,
            actor="system",
            action="delivery:delivered",
            subject=delivery_id,
            home_id=home_id,
            data={"entry_id": entry_id},
        )


def expire_stale(tx: Tx, *, now: datetime) -> int:
    """Entries still waiting for the hub after their grant expired can never unlock;
    entries the resident did not approve in time are declined."""
    rows = tx.all(
        "UPDATE entries SET state = ?, reason = ?, updated_at = ?"
        " WHERE state = 'authorized' AND grant_expires_at < ? RETURNING id, home_id",
        (EntryState.EXPIRED, Reason.HUB_TIMEOUT, tx.time(now), tx.time(now)),
    )
    for entry_id, home_id in rows:
        append_tx(
            tx, at=now, actor="system", action="entry:expired", subject=entry_id, home_id=home_id
        )
        outbox.entry_changed(
            tx, entry_id=entry_id, state=EntryState.EXPIRED, at=now, home_id=home_id
        )
    waiting = tx.all(
        "SELECT id, home_id FROM entries WHERE state = 'awaiting_approval'"
        " AND approval_deadline < ?",
        (tx.time(now),),
    )
    declined = [
        _decline(tx, entry_id, home_id, Reason.APPROVAL_TIMEOUT, now, actor="system")
        for entry_id, home_id in waiting
    ]
    return len(rows) + sum(declined)


def end_unsent(
    tx: Tx, *, entry_ids: list[str], now: datetime, reason: Reason = Reason.SERVICE_RESTARTED
) -> int:
    """Entries decided, and perhaps committed, without their answer reaching the courier's
    request: the writer process died before its answer came back (`service_restarted`;
    the courier was told 503), or the request had stopped waiting (`request_abandoned`).
    Their unlock was never sent, as only the answer's receiver publishes it; but an
    authorized entry would hold its door until its grant expired, refusing the courier's
    next try as `entry_in_progress`, and one awaiting approval would ask the resident
    about a request nobody is waiting on. Both end now, with `reason`; an entry that was
    not committed does not exist. Returns how many ended."""
    ended = 0
    for entry_id in entry_ids:
        row = tx.one("SELECT state, home_id FROM entries WHERE id = ?", (entry_id,))
        if row is not None and _end_unstarted(
            tx, entry_id, row[0], row[1], reason, now, actor="system"
        ):
            ended += 1
    return ended


def _end_unstarted(
    tx: Tx, entry_id: str, state: str, home_id: str | None, reason: Reason, now: datetime,
    *, actor: str,
) -> bool:  # fmt: skip
    """End an entry whose unlock the hub has not acted on: declined while it awaits the
    resident, expired once authorized (as it is now: the resident may have approved it
    since it was read). Returns False (and changes nothing) for an entry in any other
    state."""
    if state not in _UNSTARTED:
        return False
    row = tx.one(
        "UPDATE entries SET state = CASE state WHEN 'awaiting_approval' THEN 'declined'"
        " ELSE 'expired' END, reason = ?, updated_at = ?"
        " WHERE id = ? AND state IN ('awaiting_approval', 'authorized') RETURNING state",
        (reason, tx.time(now), entry_id),
    )
    if row is None:
        return False
    ended = EntryState(row[0])
    append_tx(tx, at=now, actor=actor, action=f"entry:{ended}", subject=entry_id,
              home_id=home_id, data={"reason": reason})  # fmt: skip
    outbox.entry_changed(tx, entry_id=entry_id, state=ended, at=now, home_id=home_id)
    return True


# --- reading (cold paths, through the ORM) ------------------------------------------


def get_entry(session: Session, *, principal: Principal, entry_id: str) -> Entry:
    """An entry its courier (or guest, or worker), the home's owner, the carrier or an
    operator may read."""
    entry = session.get(Entry, entry_id)
    if entry is None or not _may_read(session, principal, entry):
        raise NotFound("no such entry")
    return entry


def _may_read(session: Session, principal: Principal, entry: Entry) -> bool:
    if principal.role == PrincipalRole.OPERATOR:
        return True
    if principal.role in (PrincipalRole.COURIER, PrincipalRole.GUEST, PrincipalRole.WORKER):
        return entry.courier_id == principal.id
    if principal.role == PrincipalRole.CARRIER:
        delivery = session.get(Delivery, entry.delivery_id) if entry.delivery_id else None
        return delivery is not None and delivery.carrier_id == principal.carrier_id
    home = session.get(Home, entry.home_id) if entry.home_id else None
    return home is not None and home.owner_id == principal.id
