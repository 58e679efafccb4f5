"""A home's activity timeline: every entry with who came, how, when, the outcome and why,
anything the hub flagged, and the audit records behind it.

Read in a fixed number of queries whatever the page size: the entries, then their
couriers, carriers, doors, hub flags and audit records, each in one `IN (...)` query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.access.models import Entry, EntryState
from doorstep.accounts.models import Carrier, User
from doorstep.audit.models import AuditEvent
from doorstep.clips.service import drop_zone_flags
from doorstep.grants.models import AccessGrant
from doorstep.homes.models import AccessPoint, Home
from doorstep.hublink.models import HubEvent
from doorstep.protocol.codes import Reason
from doorstep.protocol.messages import EventKind
from doorstep.web.status import Tone

_OUTCOMES: dict[str, tuple[str, Tone]] = {
    EntryState.AWAITING_APPROVAL: ("Waiting for your approval", Tone.WARN),
    EntryState.AUTHORIZED: ("Let in; waiting for the door", Tone.WARN),
    EntryState.UNLOCKED: ("Door unlocked", Tone.WARN),
    EntryState.OPENED: ("Door open", Tone.WARN),
    EntryState.CLOSED: ("Door closed; relocking", Tone.WARN),
    EntryState.LOCKED: ("Locked; confirming", Tone.WARN),
    EntryState.DONE: ("Delivered; door locked and closed", Tone.OK),
    EntryState.DENIED: ("Not let in", Tone.MUTED),
    EntryState.REFUSED: ("Refused by your hub", Tone.ALERT),
    EntryState.ABORTED: ("Not delivered", Tone.MUTED),
    EntryState.EXPIRED: ("The hub did not answer", Tone.ALERT),
    EntryState.DECLINED: ("Declined", Tone.MUTED),
}

# Why, in the resident's words (the courier's advice lives in protocol.codes).
_REASONS: dict[str, str] = {
    Reason.COURIER_NOT_ASSIGNED: "The courier was not the one assigned to this delivery.",
    Reason.COURIER_INACTIVE: "The courier's account cannot make in-home deliveries.",
    Reason.PACKAGE_UNKNOWN: "The scanned parcel is not part of a delivery to this home.",
    Reason.PACKAGE_ALREADY_DELIVERED: "This parcel was already delivered.",
    Reason.IN_HOME_DISABLED: "In-home delivery is switched off for this home.",
    Reason.WEEKDAY_NOT_ALLOWED: "You take no in-home deliveries on this weekday.",
    Reason.VACATION: "You are away (vacation).",
    Reason.BLACKOUT_DAY: "No in-home deliveries on this day.",
    Reason.NOT_TODAY: "You asked for no in-home delivery today.",
    Reason.OUTSIDE_WINDOW: "The courier came outside the delivery window.",
    Reason.OUTSIDE_GEOFENCE: "The courier's phone was not at your address.",
    Reason.HUB_OFFLINE: "Your hub was offline.",
    Reason.LOCK_NOT_READY: "Your hub could not reach the lock; the bolt was not moved.",
    Reason.ENTRY_IN_PROGRESS: "Another entry was in progress at this door.",
    Reason.TOO_MANY_ATTEMPTS: "Too many entry attempts.",
    Reason.RESIDENT_DECLINED: "You declined.",
    Reason.APPROVAL_TIMEOUT: "You did not answer in time.",
    Reason.HUB_TIMEOUT: "The hub did not answer in time; the door stayed locked.",
    Reason.SERVICE_RESTARTED: "The service restarted before the unlock was sent; the door "
    "stayed locked.",
    Reason.REQUEST_ABANDONED: "The courier's request ended before the unlock was sent; the "
    "door stayed locked.",
    Reason.DOOR_NEVER_OPENED: "The door relocked before anyone opened it.",
    Reason.LOCK_JAMMED: "The lock is jammed.",
    Reason.DOOR_OPEN: "The door was open.",
    # Not "the door stayed locked": a jam may leave the bolt part-way, and an unlock whose
    # answer was lost may still land; the hub relocks either (a failed relock is flagged).
    Reason.ACTUATOR_FAILED: "The lock did not confirm the unlock; if its bolt moved at all, "
    "your hub locks it again.",
    Reason.VISITOR_INACTIVE: "Their account, or their organisation's, is deactivated.",
    Reason.GRANT_REVOKED: "You had revoked their access.",
    Reason.PROVIDER_BLOCKED: "You blocked this provider.",
    Reason.OUTSIDE_SCHEDULE: "They came outside the times you gave them.",
    Reason.USES_EXHAUSTED: "Their access was already used as often as you allowed.",
    Reason.TOKEN_REVOKED: "You had revoked their access; the hub refused it.",
}

_FLAGS = {
    EventKind.LOCK_JAMMED: "Lock jammed",
    EventKind.DOOR_FORCED: "Door forced open",
    EventKind.LOCK_ERROR: "Lock error",
}


@dataclass(frozen=True, slots=True)
class AuditLine:
    seq: int
    at: datetime
    actor: str
    action: str
    detail: str
    hash_prefix: str


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    id: str
    who: str
    how: str
    at: datetime
    outcome: str
    tone: Tone
    reason: str | None
    flags: tuple[str, ...]
    audit: tuple[AuditLine, ...]


def timeline(session: Session, *, home: Home, limit: int) -> list[TimelineEntry]:
    """The home's newest `limit` entries, newest first."""
    entries = session.scalars(
        select(Entry)
        .where(Entry.home_id == home.id)
        .order_by(Entry.created_at.desc(), Entry.id.desc())
        .limit(limit)
    ).all()
    if not entries:
        return []
    names = _Names.load(session, home, entries)
    flags = _flags(session, [e.id for e in entries])
    for entry_id, flag in drop_zone_flags(session, entry_ids=[e.id for e in entries]).items():
        flags[entry_id] = (*flags.get(entry_id, ()), flag)
    audit = _audit(session, home, entries)
    return [
        _entry(e, names, flags.get(e.id, ()), _audit_of(e, audit), names.actor) for e in entries
    ]


def outcome_of(state: str, reason: str | None) -> tuple[str, Tone, str | None]:
    text, tone = _OUTCOMES.get(state, (state.replace("_", " ").capitalize(), Tone.MUTED))
    why = _REASONS.get(reason, f"Reason: {reason.replace('_', ' ')}.") if reason else None
    return text, tone, why


@dataclass(frozen=True, slots=True)
class _Names:
    owner_id: str
    users: dict[str, User]
    carriers: dict[str, str]
    doors: dict[str, str]
    grants: dict[str, str]  # access grant id -> the label the resident gave it

    @classmethod
    def load(cls, session: Session, home: Home, entries: Sequence[Entry]) -> _Names:
        users = {
            u.id: u
            for u in session.scalars(
                select(User).where(User.id.in_({e.courier_id for e in entries}))
            )
        }
        carrier_ids = {u.carrier_id for u in users.values() if u.carrier_id}
        carriers = {
            carrier_id: name
            for carrier_id, name in session.execute(
                select(Carrier.id, Carrier.name).where(Carrier.id.in_(carrier_ids))
            )
        }
        doors = {
            point_id: name
            for point_id, name in session.execute(
                select(AccessPoint.id, AccessPoint.name).where(AccessPoint.home_id == home.id)
            )
        }
        grant_ids = {e.grant_id for e in entries if e.grant_id}
        grants = {
            grant_id: label
            for grant_id, label in session.execute(
                select(AccessGrant.id, AccessGrant.label).where(AccessGrant.id.in_(grant_ids))
            )
        }
        return cls(home.owner_id, users, carriers, doors, grants)

    def visitor(self, entry: Entry) -> str:
        """Who came: the courier (and carrier), the guest or provider as the resident named
        them on the grant, or the resident themselves."""
        if entry.purpose == "resident":
            return "You" if entry.courier_id == self.owner_id else "A resident"
        if entry.grant_id and entry.grant_id in self.grants:
            return self.grants[entry.grant_id]
        return self.courier(entry.courier_id)

    def courier(self, user_id: str) -> str:
        user = self.users.get(user_id)
        if user is None:
            return "Unknown courier"
        carrier = self.carriers.get(user.carrier_id or "")
        return f"{user.name} ({carrier})" if carrier else user.name

    def actor(self, actor: str) -> str:
        role, _, principal_id = actor.partition(":")
        if role in ("courier", "guest", "worker"):
            return self.courier(principal_id)
        if role == "hub":
            return "Your hub"
        if role == "carrier":
            return "The carrier"
        if role == "resident":
            return "You" if principal_id == self.owner_id else "A resident"
        return "Doorstep" if role == "system" else actor


def _entry(
    entry: Entry,
    names: _Names,
    flags: tuple[str, ...],
    audit: list[AuditEvent],
    actor: Callable[[str], str],
) -> TimelineEntry:
    outcome, tone, why = outcome_of(entry.state, entry.reason)
    return TimelineEntry(
        id=entry.id,
        who=names.visitor(entry),
        how=_how(entry, names, audit),
        at=entry.created_at,
        outcome=outcome,
        tone=Tone.ALERT if flags else tone,
        reason=why,
        flags=flags,
        audit=tuple(_audit_line(event, actor) for event in audit),
    )


_PURPOSES = {
    "guest": "Guest visit",
    "service": "Service appointment",
    "resident": "Unlocked from the app",
}


def _how(entry: Entry, names: _Names, audit: Iterable[AuditEvent]) -> str:
    door = names.doors.get(entry.access_point_id or "")
    barcode = next(
        (str(a.data["barcode"]) for a in audit if a.subject == entry.id and "barcode" in a.data),
        None,
    )
    parts = [_PURPOSES.get(entry.purpose, "In-home delivery")]
    if entry.purpose in ("guest", "service"):
        parts.append("with a keypad code" if entry.method == "keypad" else "with the app")
    if door:
        parts.append(f"through the {door.lower()}")
    if barcode:
        parts.append(f"parcel {barcode}")
    return ", ".join(parts)


def _flags(session: Session, entry_ids: list[str]) -> dict[str, tuple[str, ...]]:
    """What the entries' own hubs reported of them: an event's `entry_id` is whatever
    its hub wrote, so one naming an entry of another hub (another home) is not read."""
    rows = session.execute(
        select(HubEvent.entry_id, HubEvent.kind)
        .join(Entry, (Entry.id == HubEvent.entry_id) & (Entry.hub_id == HubEvent.hub_id))
        .where(HubEvent.entry_id.in_(entry_ids), HubEvent.kind.in_(list(_FLAGS)))
        .order_by(HubEvent.epoch, HubEvent.seq)
    ).all()
    flags: dict[str, list[str]] = {}
    for entry_id, kind in rows:
        found = flags.setdefault(str(entry_id), [])
        if _FLAGS[EventKind(kind)] not in found:
            found.append(_FLAGS[EventKind(kind)])
    return {entry_id: tuple(found) for entry_id, found in flags.items()}


def _audit(session: Session, home: Home, entries: Sequence[Entry]) -> list[AuditEvent]:
    subjects = {e.id for e in entries} | {e.delivery_id for e in entries if e.delivery_id}
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.home_id == home.id, AuditEvent.subject.in_(subjects))
            .order_by(AuditEvent.seq)
        )
    )


def _audit_of(entry: Entry, audit: list[AuditEvent]) -> list[AuditEvent]:
    """The entry's own records, its delivery's booking, and the delivery's completion
    when this entry completed it."""
    return [a for a in audit if a.subject == entry.id or _delivery_record(entry, a)]


def _delivery_record(entry: Entry, event: AuditEvent) -> bool:
    if entry.delivery_id is None or event.subject != entry.delivery_id:
        return False
    completed_by = event.data.get("entry_id")
    return completed_by is None or completed_by == entry.id


def _audit_line(event: AuditEvent, actor: Callable[[str], str]) -> AuditLine:
    detail = ", ".join(
        f"{key.replace('_', ' ')} {value}"
        for key, value in sorted(event.data.items())
        if isinstance(value, str | int | float) and not isinstance(value, bool)
    )
    return AuditLine(
        seq=event.seq,
        at=event.ts,
        actor=actor(event.actor),
        action=event.action.replace(":", " ").replace("_", " ").capitalize(),
        detail=detail,
        hash_prefix=event.hash[:12],
    )
