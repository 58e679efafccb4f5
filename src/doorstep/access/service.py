"""The courier entry: every check in DESIGN's order, then one signed grant, one command.

`request_entry` decides and, when every check passes, creates the entry, signs a grant
bound to it and queues the unlock command to be published after the commit. Denials are
entries too (state `denied`, a reason code, no grant) so that the courier, the carrier and
the audit log all see them. `apply_reply` and `apply_hub_event` move entries forward as
the hub reports; an entry never moves backwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from doorstep.access.geo import distance_m
from doorstep.access.models import OPEN_STATES, PROGRESS, Entry, EntryState
from doorstep.accounts.service import Principal
from doorstep.audit import service as audit
from doorstep.db import after_commit, new_id
from doorstep.deliveries.models import Delivery, DeliveryStatus, Package
from doorstep.errors import NotFound
from doorstep.homes.models import AccessPoint, Home, Hub
from doorstep.protocol import PROTOCOL_VERSION, Reason
from doorstep.protocol.grants import GrantClaims, GrantSigner, audience_for, new_token_id
from doorstep.protocol.messages import Command, CommandKind, Event, EventKind, Reply, b64encode
from doorstep.settings import EntrySettings

MAX_POSITION_ACCURACY_M = 100.0
UNLOCK_SCOPE = ("unlock",)

Publish = Callable[[str, Command], None]


@dataclass(frozen=True, slots=True)
class EntryRequest:
    delivery_id: str
    barcode: str
    latitude: float
    longitude: float
    accuracy_m: float


@dataclass(frozen=True, slots=True)
class EntryDecision:
    entry: Entry
    command: Command | None

    @property
    def authorized(self) -> bool:
        return self.command is not None


@dataclass(frozen=True, slots=True)
class _Target:
    delivery: Delivery
    package: Package
    home: Home
    access_point: AccessPoint
    hub: Hub


class Denied(Exception):
    def __init__(self, reason: Reason, target: _Target | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.target = target


def request_entry(
    session: Session,
    *,
    courier: Principal,
    request: EntryRequest,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
    publish: Publish,
) -> EntryDecision:
    try:
        target = _check(session, courier=courier, request=request, now=now, settings=settings)
        return _authorize(session, courier, target, now, settings, signer, publish)
    except Denied as denial:
        return EntryDecision(_deny(session, courier, request, denial, now), None)


def _check(
    session: Session,
    *,
    courier: Principal,
    request: EntryRequest,
    now: datetime,
    settings: EntrySettings,
) -> _Target:
    delivery = session.get(Delivery, request.delivery_id)
    if delivery is None or delivery.courier_id != courier.id:
        raise Denied(Reason.COURIER_NOT_ASSIGNED)
    if delivery.carrier_id != courier.carrier_id:
        raise Denied(Reason.COURIER_NOT_ASSIGNED)
    package = session.scalar(
        select(Package).where(
            Package.delivery_id == delivery.id, Package.barcode == request.barcode
        )
    )
    if package is None:
        raise Denied(Reason.PACKAGE_UNKNOWN)
    if package.delivered_at is not None or delivery.status != DeliveryStatus.BOOKED:
        raise Denied(Reason.PACKAGE_ALREADY_DELIVERED)
    home = session.get(Home, delivery.home_id)
    access_point = session.get(AccessPoint, delivery.access_point_id)
    assert home is not None and access_point is not None  # foreign keys
    hub = session.get(Hub, access_point.hub_id) if access_point.hub_id else None
    target = _Target(delivery, package, home, access_point, hub) if hub else None
    if not home.in_home_enabled:
        raise Denied(Reason.IN_HOME_DISABLED, target)
    tolerance = timedelta(seconds=settings.window_tolerance_seconds)
    if not delivery.window_start - tolerance <= now <= delivery.window_end + tolerance:
        raise Denied(Reason.OUTSIDE_WINDOW, target)
    if not _inside_geofence(home, request):
        raise Denied(Reason.OUTSIDE_GEOFENCE, target)
    if hub is None or target is None or not hub.online or hub.claimed_at is None:
        raise Denied(Reason.HUB_OFFLINE, target)
    if _open_entry_exists(session, access_point.id):
        raise Denied(Reason.ENTRY_IN_PROGRESS, target)
    return target


def _inside_geofence(home: Home, request: EntryRequest) -> bool:
    # A fix less precise than 100 m cannot place anyone at a door; within that, the
    # reported accuracy widens the fence (the courier is somewhere in that circle).
    if not 0 <= request.accuracy_m <= MAX_POSITION_ACCURACY_M:
        return False
    distance = distance_m(home.latitude, home.longitude, request.latitude, request.longitude)
    return distance <= home.geofence_m + request.accuracy_m


def _open_entry_exists(session: Session, access_point_id: str) -> bool:
    return (
        session.scalar(
            select(Entry.id).where(
                Entry.access_point_id == access_point_id, Entry.state.in_(OPEN_STATES)
            )
        )
        is not None
    )


def _authorize(
    session: Session,
    courier: Principal,
    target: _Target,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
    publish: Publish,
) -> EntryDecision:
    token_id = new_token_id()
    issued = int(now.timestamp())
    expires = issued + settings.grant_ttl_seconds
    entry = Entry(
        id=new_id("ent"),
        delivery_id=target.delivery.id,
        package_id=target.package.id,
        home_id=target.home.id,
        access_point_id=target.access_point.id,
        hub_id=target.hub.id,
        courier_id=courier.id,
        state=EntryState.AUTHORIZED,
        token_id=token_id.hex(),
        command_id=secrets.token_hex(12),
        grant_expires_at=datetime.fromtimestamp(expires, now.tzinfo),
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(entry)
    except IntegrityError as exc:  # another request won the race for this door
        raise Denied(Reason.ENTRY_IN_PROGRESS, target) from exc
    grant = signer.sign(
        GrantClaims(
            audience=audience_for(target.hub.id, target.access_point.slug),
            not_before=issued,
            expires=expires,
            issued_at=issued,
            token_id=token_id,
            scope=UNLOCK_SCOPE,
            entry_id=entry.id,
        )
    )
    assert entry.command_id is not None
    command = Command(
        v=PROTOCOL_VERSION,
        command_id=entry.command_id,
        kind=CommandKind.UNLOCK,
        not_after=issued + settings.command_expiry_seconds,
        entry_id=entry.id,
        access_point=target.access_point.slug,
        grant=b64encode(grant),
    )
    _audit(
        session,
        entry,
        now,
        actor=courier.actor,
        action="entry:authorized",
        data={
            "delivery_id": target.delivery.id,
            "barcode": target.package.barcode,
            "kid": signer.kid,
            "token_id": entry.token_id,
            "expires": expires,
        },
    )
    hub_id = target.hub.id
    after_commit(session, lambda: publish(hub_id, command))
    return EntryDecision(entry, command)


def _deny(
    session: Session, courier: Principal, request: EntryRequest, denial: Denied, now: datetime
) -> Entry:
    target = denial.target
    delivery = _assigned_delivery(session, courier, request)
    entry = Entry(
        id=new_id("ent"),
        delivery_id=delivery.id if delivery else None,
        home_id=delivery.home_id if delivery else None,
        access_point_id=target.access_point.id if target else None,
        hub_id=target.hub.id if target else None,
        courier_id=courier.id,
        state=EntryState.DENIED,
        reason=denial.reason,
        created_at=now,
        updated_at=now,
    )
    session.add(entry)
    _audit(
        session,
        entry,
        now,
        actor=courier.actor,
        action="entry:denied",
        data={
            "reason": str(denial.reason),
            "delivery_id": request.delivery_id,
            "barcode": request.barcode,
        },
    )
    return entry


def _assigned_delivery(
    session: Session, courier: Principal, request: EntryRequest
) -> Delivery | None:
    """The delivery a denial belongs to, when it is this courier's (so the home sees it)."""
    delivery = session.get(Delivery, request.delivery_id)
    return delivery if delivery is not None and delivery.courier_id == courier.id else None


def _audit(
    session: Session,
    entry: Entry,
    now: datetime,
    *,
    actor: str,
    action: str,
    data: dict[str, object] | None = None,
) -> None:
    audit.append(
        session,
        at=now,
        actor=actor,
        action=action,
        subject=entry.id,
        home_id=entry.home_id,
        data=dict(data or {}),
    )


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


def apply_reply(session: Session, *, hub_id: str, reply: Reply, now: datetime) -> str | None:
    entry = session.scalar(
        select(Entry).where(Entry.command_id == reply.command_id, Entry.hub_id == hub_id)
    )
    if entry is None:
        return None
    if reply.result == "ok":
        _advance(session, entry, EntryState.UNLOCKED, now, actor=f"hub:{hub_id}")
    elif entry.state == EntryState.AUTHORIZED:
        entry.state = EntryState.REFUSED
        entry.reason = reply.reason or "hub_error"
        entry.updated_at = now
        _audit(
            session,
            entry,
            now,
            actor=f"hub:{hub_id}",
            action="entry:refused",
            data={"reason": entry.reason},
        )
    return entry.id


def apply_hub_event(session: Session, *, hub_id: str, event: Event, now: datetime) -> None:
    target_state = _EVENT_STATES.get(event.kind)
    entry_id = event.data.get("entry_id")
    if target_state is None or not isinstance(entry_id, str):
        return
    entry = session.get(Entry, entry_id)
    if entry is None or entry.hub_id != hub_id:
        return
    _advance(
        session,
        entry,
        target_state,
        now,
        actor=f"hub:{hub_id}",
        data={"epoch": event.epoch, "seq": event.seq},
    )
    if target_state == EntryState.DONE:
        _mark_delivered(session, entry, now)


def _advance(
    session: Session,
    entry: Entry,
    state: EntryState,
    now: datetime,
    *,
    actor: str,
    data: dict[str, object] | None = None,
) -> None:
    if entry.state not in PROGRESS or PROGRESS.index(EntryState(entry.state)) >= PROGRESS.index(
        state
    ):
        return
    entry.state = state
    entry.updated_at = now
    setattr(entry, _STAMPS[state], now)
    _audit(session, entry, now, actor=actor, action=f"entry:{state}", data=data)


def _mark_delivered(session: Session, entry: Entry, now: datetime) -> None:
    if entry.delivery_id is None:
        return
    session.execute(
        update(Package)
        .where(Package.delivery_id == entry.delivery_id, Package.delivered_at.is_(None))
        .values(delivered_at=now)
    )
    delivery = session.get(Delivery, entry.delivery_id)
    if delivery is not None and delivery.status == DeliveryStatus.BOOKED:
        delivery.status = DeliveryStatus.DELIVERED
        audit.append(
            session,
            at=now,
            actor="system",
            action="delivery:delivered",
            subject=delivery.id,
            home_id=delivery.home_id,
            data={"entry_id": entry.id},
        )


def expire_stale(session: Session, *, now: datetime) -> int:
    """Entries still waiting for the hub after their grant expired can never unlock."""
    stale = session.scalars(
        select(Entry).where(Entry.state == EntryState.AUTHORIZED, Entry.grant_expires_at < now)
    ).all()
    for entry in stale:
        entry.state = EntryState.EXPIRED
        entry.reason = Reason.HUB_TIMEOUT
        entry.updated_at = now
        _audit(session, entry, now, actor="system", action="entry:expired")
    return len(stale)


def get_entry(session: Session, *, principal: Principal, entry_id: str) -> Entry:
    """An entry its courier, the home's owner, the carrier or an operator may read."""
    entry = session.get(Entry, entry_id)
    if entry is None or not _may_read(session, principal, entry):
        raise NotFound("no such entry")
    return entry


def _may_read(session: Session, principal: Principal, entry: Entry) -> bool:
    from doorstep.permissions import PrincipalRole

    if principal.role == PrincipalRole.OPERATOR:
        return True
    if principal.role == PrincipalRole.COURIER:
        return entry.courier_id == principal.id
    if principal.role == PrincipalRole.CARRIER:
        delivery = session.get(Delivery, entry.delivery_id) if entry.delivery_id else None
        return delivery is not None and delivery.carrier_id == principal.carrier_id
    home = session.get(Home, entry.home_id) if entry.home_id else None
    return home is not None and home.owner_id == principal.id
