"""A home's live status as the resident sees it: the hub, each door's lock and sensor,
the battery and the camera, each as a short text and a tone.

The service learns lock and door states only from the hub's journalled events
(`lock.*`, `door.*` in `hub_events`), so a state is the newest such event for that door,
and "not reported yet" until there is one. Hubs do not report battery levels to the
service yet, and no camera is installed yet: both say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.homes import service as homes
from doorstep.homes.models import AccessPoint, Home, Hub
from doorstep.hublink.models import HubEvent
from doorstep.protocol.messages import EventKind

# How many recent lock and door events per hub are read to find each door's newest state.
RECENT_DEVICE_EVENTS = 200


class Tone(StrEnum):
    OK = "ok"
    WARN = "warn"
    ALERT = "alert"
    MUTED = "muted"


@dataclass(frozen=True, slots=True)
class StatusItem:
    key: str
    label: str
    text: str
    tone: Tone


_LOCK = {
    EventKind.LOCK_LOCKED: ("Locked", Tone.OK),
    EventKind.LOCK_UNLOCKED: ("Unlocked", Tone.WARN),
    EventKind.LOCK_JAMMED: ("Jammed", Tone.ALERT),
}
_DOOR = {
    EventKind.DOOR_CLOSED: ("Closed", Tone.OK),
    EventKind.DOOR_OPENED: ("Open", Tone.WARN),
    EventKind.DOOR_FORCED: ("Forced open", Tone.ALERT),
}
NOT_REPORTED = ("Not reported yet", Tone.MUTED)


def home_status(session: Session, *, home: Home) -> list[StatusItem]:
    hubs = homes.hubs_of(session, home_id=home.id)
    points = homes.access_points(session, home_id=home.id)
    online = {hub.id: hub.online for hub in hubs}
    latest = _latest_states(session, [hub.id for hub in hubs])
    items = [hub_item(hubs[0] if hubs else None)]
    for point in points:
        items.extend(_door_items(point, latest, online.get(point.hub_id or "", False)))
    items.append(StatusItem("battery", "Battery", "Not reported by the hub yet", Tone.MUTED))
    items.append(StatusItem("camera", "Camera", "Not installed yet", Tone.MUTED))
    return items


def hub_item(hub: Hub | None) -> StatusItem:
    text, tone = _hub_state(hub)
    return StatusItem("hub", "Hub", text, tone)


def _hub_state(hub: Hub | None) -> tuple[str, Tone]:
    if hub is None:
        return "No hub yet", Tone.MUTED
    if hub.online:
        return "Online", Tone.OK
    if hub.claimed_at is None:
        return "Waiting for the hub to use its claim code", Tone.WARN
    if hub.status_at is None:
        return "Enrolled, connecting", Tone.WARN
    return "Offline", Tone.ALERT


def _door_items(
    point: AccessPoint, latest: dict[tuple[str, str, str], str], hub_online: bool
) -> list[StatusItem]:
    items = []
    for family, labels, noun in (("lock", _LOCK, "lock"), ("door", _DOOR, "door sensor")):
        kind = latest.get((point.hub_id or "", point.slug, family))
        text, tone = labels[EventKind(kind)] if kind else NOT_REPORTED
        if kind and not hub_online:
            text, tone = f"{text} (last report; the hub is offline)", Tone.MUTED
        label = f"{point.name}: {noun}"
        items.append(StatusItem(f"{family}:{point.slug}", label, text, tone))
    return items


def _latest_states(session: Session, hub_ids: Sequence[str]) -> dict[tuple[str, str, str], str]:
    """(hub, door slug, "lock" | "door") -> the kind of the newest event of that family."""
    latest: dict[tuple[str, str, str], str] = {}
    for hub_id in hub_ids:
        rows = session.execute(
            select(HubEvent.kind, HubEvent.data)
            .where(HubEvent.hub_id == hub_id, HubEvent.kind.in_([*_LOCK, *_DOOR]))
            .order_by(HubEvent.epoch.desc(), HubEvent.seq.desc())
            .limit(RECENT_DEVICE_EVENTS)
        ).all()
        for kind, data in rows:
            family = "lock" if kind in _LOCK else "door"
            latest.setdefault((hub_id, str(data.get("access_point", "")), family), kind)
    return latest
