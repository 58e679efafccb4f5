"""Queue messages inside the transaction that makes the change they report.

Plain SQL on a `Tx` (the entry paths run on the writer thread). One query finds who is to
hear about an entry: the courier's carrier's active webhook endpoint and the home owner's
address; a row per recipient goes into `outbox`. Event ids are derived from what they
report (`<entry id>.<state>`), so the same change can never become two different events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from doorstep.db import ordered_id
from doorstep.notify.models import Channel
from doorstep.sql import Tx

_INSERT = (
    "INSERT INTO outbox (id, event_id, event_type, channel, target, payload, state,"
    " attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?j, 'pending', 0, ?, ?)"
)

_RECIPIENTS = (
    "SELECT w.id, o.email, e.delivery_id, e.reason, e.purpose, e.method, g.label FROM entries e"
    " LEFT JOIN users c ON c.id = e.courier_id"
    " LEFT JOIN webhook_endpoints w ON w.carrier_id = c.carrier_id AND w.active = ?"
    " LEFT JOIN homes h ON h.id = e.home_id"
    " LEFT JOIN users o ON o.id = h.owner_id"
    " LEFT JOIN access_grants g ON g.id = e.grant_id"
    " WHERE e.id = ?"
)

# What the resident is told, by entry state; other states reach the carrier only.
RESIDENT_MAIL: dict[str, tuple[str, str]] = {
    "authorized": (
        "A courier is at your door",
        "A courier has been let in to deliver a parcel. Your door will relock when they"
        " leave; we will tell you when it has.",
    ),
    "done": (
        "Delivered, and your door is locked",
        "Your parcel was delivered inside. The bolt reports locked and the door sensor"
        " reports closed.",
    ),
    "aborted": (
        "The courier did not go in",
        "Your door was unlocked for a delivery but never opened, and it has relocked"
        " itself. The parcel will come another way.",
    ),
}


def entry_changed(
    tx: Tx,
    *,
    entry_id: str,
    state: str,
    at: datetime,
    home_id: str | None,
    data: dict[str, Any] | None = None,
) -> None:
    """Queue the carrier's `entry.<state>` webhook and, for some states, the resident's
    email, in `tx`'s transaction."""
    row = tx.one(_RECIPIENTS, (True, entry_id))
    if row is None:
        return
    endpoint_id, owner_email, delivery_id, reason, purpose, method, label = row
    event_id = f"{entry_id}.{state}"
    if endpoint_id is not None:
        event = {
            "id": event_id,
            "type": f"entry.{state}",
            "created_at": at.isoformat(),
            "data": {
                "entry_id": entry_id,
                "state": state,
                "reason": reason,
                "delivery_id": delivery_id,
                **(data or {}),
            },
        }
        _queue(tx, event_id, f"entry.{state}", Channel.WEBHOOK, endpoint_id, event, at)
    if purpose in (None, "delivery"):
        mail = RESIDENT_MAIL.get(state)
    elif purpose == "resident":
        mail = REMOTE_MAIL.get(state)
    else:
        mail = _visit_mail(state, method, label or "Your guest")
    if mail is not None and owner_email and home_id is not None and _wanted(tx, entry_id, state):
        subject, text = mail
        message = {"subject": subject, "text": text, "entry_id": entry_id, "home_id": home_id}
        _queue(tx, event_id, f"entry.{state}", Channel.EMAIL, owner_email, message, at)


# The resident's switch for each optional email (`doorstep.web.notifications`; no row:
# every email). Alerts have none: they always go out.
_CHOICE = {
    "authorized": "entry_started",
    "unlocked": "entry_started",
    "done": "entry_ended",
    "aborted": "entry_ended",
}


def _wanted(tx: Tx, entry_id: str, state: str) -> bool:
    column = _CHOICE.get(state)
    if column is None:
        return True
    row = tx.one(
        f"SELECT n.{column} FROM entries e JOIN homes h ON h.id = e.home_id"  # noqa: S608
        " JOIN notification_choices n ON n.user_id = h.owner_id WHERE e.id = ?",
        (entry_id,),
    )
    return row is None or bool(row[0])


# The resident's own remote unlock: told anyway, so an unlock they did not make shows.
REMOTE_MAIL: dict[str, tuple[str, str]] = {
    "authorized": (
        "Your door was unlocked from the app",
        "Your door was unlocked from afar, after your password was entered again. If this"
        " was not you, lock it from the app, change your password and sign out everywhere.",
    ),
    "done": (
        "Your door is locked again",
        "After the remote unlock, the bolt reports locked and the door sensor closed.",
    ),
}


def _visit_mail(state: str, method: str | None, label: str) -> tuple[str, str] | None:
    """What the resident is told of a guest's or provider's entry: every one, by name
    and by how they came in (the app, or their keypad code)."""
    how = "with their keypad code" if method == "keypad" else "with the Doorstep app"
    if state == "authorized" or (state == "unlocked" and method == "keypad"):
        return (
            f"{label} is coming in",
            f"{label} unlocked your door {how}. The camera is recording; your door will"
            " relock when they close it, and we will tell you when it has.",
        )
    if state == "done":
        return (
            f"{label} has left, and your door is locked",
            f"{label}'s visit is over. The bolt reports locked and the door sensor reports closed.",
        )
    if state == "aborted":
        return (f"{label} did not go in", "Your door was unlocked but never opened; it has"
                " relocked itself.")  # fmt: skip
    return None


def queue_mail(
    tx: Tx, *, event_id: str, event_type: str, to: str, message: dict[str, Any], at: datetime
) -> None:
    """Queue one email (`message` holds subject and text) to any address."""
    _queue(tx, event_id, event_type, Channel.EMAIL, to, message, at)


# What the resident is told when the hub raises an alert during an entry.
ALERT_MAIL: dict[str, tuple[str, str]] = {
    "relock_failed": (
        "Alert: your door did not lock",
        "After a delivery your door closed but the lock did not report locked in time. "
        "Check the door, or lock it from the app. The courier's next stops are on hold.",
    ),
    "door_held_open": (
        "Alert: your door is standing open",
        "Your door has been open longer than a delivery should take. Watch live or call "
        "the carrier; the door will relock when it closes.",
    ),
    # `door_held_open` raised while the door sensor reports nothing (`SENSOR_SILENT`).
    "door_held_open:sensor_silent": (
        "Alert: your door sensor stopped reporting",
        "During a delivery your door sensor stopped reporting while the door was unlocked, "
        "so we cannot tell whether the door is shut. Check it, or watch live; the door "
        "relocks once its sensor reports it closed.",
    ),
    "camera_lost": (
        "Alert: your camera stopped during a delivery",
        "Your camera stopped sending a live picture while a courier was inside. The courier "
        "was told to finish and close the door; it locks itself. The entry is flagged.",
    ),
    "locked_while_open": (
        "Alert: the lock closed while the door was open",
        "The bolt reports locked but the door sensor says the door is open. Your door may "
        "not be shut; please check it.",
    ),
}


def delivery_booked(
    tx: Tx,
    *,
    delivery_id: str,
    owner_email: str,
    home_id: str,
    home_name: str,
    timezone: str,
    window: tuple[datetime, datetime],
    at: datetime,
) -> None:
    """Tell the resident the day and window of a booked in-home delivery, in the home's
    own time zone."""
    zone = ZoneInfo(timezone)
    start, end = (moment.astimezone(zone) for moment in window)
    when = f"{start:%A %d %B}, between {start:%H:%M} and {end:%H:%M}"
    message = {
        "subject": f"In-home delivery {start:%A %d %B}",
        "text": f"A parcel is booked for in-home delivery at {home_name} on {when}. "
        "You can turn it off for today, or ask to approve the entry, in your preferences.",
        "delivery_id": delivery_id,
        "home_id": home_id,
    }
    event_id = f"{delivery_id}.booked"
    _queue(tx, event_id, "delivery.booked", Channel.EMAIL, owner_email, message, at)


SENSOR_SILENT = "door_held_open:sensor_silent"


def entry_alert(
    tx: Tx, *, entry_id: str, alert: str, at: datetime, home_id: str | None,
    mail: str | None = None,
) -> None:  # fmt: skip
    """Queue the carrier's `entry.alert` webhook and the resident's alert email (the
    `ALERT_MAIL` entry `mail`, by default the alert's own)."""
    row = tx.one(_RECIPIENTS, (True, entry_id))
    if row is None:
        return
    endpoint_id, owner_email, delivery_id = row[:3]
    event_id = f"{entry_id}.alert.{alert}"
    if endpoint_id is not None:
        event = {
            "id": event_id,
            "type": "entry.alert",
            "created_at": at.isoformat(),
            "data": {"entry_id": entry_id, "alert": alert, "delivery_id": delivery_id},
        }
        _queue(tx, event_id, "entry.alert", Channel.WEBHOOK, endpoint_id, event, at)
    written = ALERT_MAIL.get(mail or alert)
    if written is not None and owner_email and home_id is not None:
        subject, text = written
        message = {"subject": subject, "text": text, "entry_id": entry_id, "home_id": home_id}
        _queue(tx, event_id, "entry.alert", Channel.EMAIL, owner_email, message, at)


def _queue(
    tx: Tx,
    event_id: str,
    event_type: str,
    channel: Channel,
    target: str,
    payload: dict[str, Any],
    at: datetime,
) -> None:
    tx.run(
        _INSERT,
        (
            ordered_id("msg"),
            event_id,
            event_type,
            channel,
            target,
            tx.json(payload),
            tx.time(at),
            tx.time(at),
        ),
    )


def resident_mail(
    tx: Tx,
    *,
    event_id: str,
    event_type: str,
    home_id: str,
    subject: str,
    text: str,
    at: datetime,
    entry_id: str | None = None,
) -> bool:
    """Queue one email to the home's owner (no webhook); False if the home has none."""
    row = tx.one(
        "SELECT o.email FROM homes h JOIN users o ON o.id = h.owner_id WHERE h.id = ?",
        (home_id,),
    )
    if row is None or not row[0]:
        return False
    message = {"subject": subject, "text": text, "entry_id": entry_id, "home_id": home_id}
    _queue(tx, event_id, event_type, Channel.EMAIL, str(row[0]), message, at)
    return True
