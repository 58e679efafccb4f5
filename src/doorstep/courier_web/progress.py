"""What the courier is told about an entry at each step, in one place.

The page shows `headline` in big type and `detail` under it: while the entry is open,
what to do now; once it has ended, the outcome and the advice of `protocol.codes`. A hub
alert outranks the step while the entry is open: the courier must not walk away from a
door that did not lock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from doorstep.access import service
from doorstep.access.models import OPEN_STATES, EntryState
from doorstep.access.router import entry_read  # the API's view, with its advice
from doorstep.courier_web.schemas import CourierEntryRead
from doorstep.protocol.messages import Alert


@dataclass(frozen=True, slots=True)
class Step:
    step: str
    tone: str
    headline: str
    detail: str


STAY = "Stay at the door, with the parcel."
LEAVE = "Leave the parcel at the door, use the locker or return it."
CALLED_OFF = Step(
    "leaving",
    "warn",
    "Entry called off — close the door",
    "Leave the parcel outside and pull the door shut; it locks itself. "
    "Stay until the lock confirms.",
)
LOCKING = Step("locking", "warn", "Locking…", "Stay at the door until the lock confirms.")
# A request or proof the hub did not answer within the wait (the app's 202): the command
# is out, and the door may still open.
LATE = Step(
    "late",
    "warn",
    "The door has not answered yet",
    "Stay at the door, with the parcel: it may still open. This page carries on when it answers.",
)

_OPEN: dict[str, Step] = {
    EntryState.AUTHORIZED: Step("checking", "muted", "Checking the door…", STAY),
    EntryState.UNLOCKED: Step(
        "unlocked",
        "ok",
        "Door unlocked — go in",
        "Place the parcel as the notes say, then come out.",
    ),
    EntryState.OPENED: Step(
        "inside",
        "ok",
        "Close the door behind you — it locks itself",
        "Place the parcel, step out and pull the door shut.",
    ),
    EntryState.CLOSED: LOCKING,
    EntryState.LOCKED: LOCKING,
}
_ALERTS: dict[str, Step] = {
    Alert.RELOCK_FAILED: Step(
        "alert",
        "alert",
        "The door did not lock — stay and call dispatch",
        "Do not leave the door unlocked. Your next in-home stop waits until it is locked.",
    ),
    Alert.DOOR_HELD_OPEN: Step(
        "alert", "alert", "The door is still open — close it now", "It locks itself once shut."
    ),
    Alert.CAMERA_LOST: Step(
        "alert",
        "alert",
        "The camera stopped — finish now and close the door",
        "Put the parcel down, step out and close the door; it locks itself.",
    ),
    Alert.LOCKED_WHILE_OPEN: Step(
        "alert",
        "alert",
        "The bolt is out but the door is open — stay and call dispatch",
        "Close the door; do not leave it like this.",
    ),
}
_ENDED: dict[str, tuple[str, str]] = {  # state -> (tone, headline); the detail is the advice
    EntryState.DONE: ("ok", "Delivered and locked"),
    EntryState.DENIED: ("alert", "Entry denied"),
    EntryState.REFUSED: ("alert", "The door did not open"),
    EntryState.EXPIRED: ("alert", "The door did not answer"),
    EntryState.DECLINED: ("alert", "The resident declined"),
    EntryState.ABORTED: ("warn", "Entry aborted"),
}
DONE_DETAIL = "The door is locked and closed. On to your next stop."
# Once the door has shut behind the courier, there is nothing left to call off: the
# entry ends when the lock confirms (or raises its alert).
ABORTABLE = (
    EntryState.AWAITING_APPROVAL,
    EntryState.AUTHORIZED,
    EntryState.UNLOCKED,
    EntryState.OPENED,
)


def describe(
    entry: service.EntryView, advice: str | None, *, aborting: bool, unanswered: bool = False
) -> Step:
    """What the page says; `unanswered`: the hub did not answer the request or proof
    within the wait (`access.router.Sent`)."""
    state = entry.state
    if state not in OPEN_STATES:
        tone, headline = _ENDED.get(state, ("alert", "Entry ended"))
        detail = DONE_DETAIL if state == EntryState.DONE else advice or LEAVE
        return Step(str(state), tone, headline, detail)
    if entry.alert in _ALERTS:
        return _ALERTS[entry.alert]
    if state == EntryState.AWAITING_APPROVAL:
        return Step("waiting", "warn", "Waiting for the resident…", advice or STAY)
    if aborting and state in (EntryState.UNLOCKED, EntryState.OPENED):
        return CALLED_OFF
    if state == EntryState.AUTHORIZED and entry.to_sign:
        return Step("proving", "muted", "Confirming with this phone…", STAY)
    if state == EntryState.AUTHORIZED and unanswered:
        return LATE
    return _OPEN[state]


def read(
    entry: service.EntryView, *, aborting: bool = False, unanswered: bool = False
) -> CourierEntryRead:
    """The entry as the courier app shows it; `unanswered` as for `describe`."""
    base = entry_read(entry)
    step = describe(entry, base.advice, aborting=aborting, unanswered=unanswered)
    ended = entry.state not in OPEN_STATES
    return CourierEntryRead(
        **base.model_dump(),
        step=step.step,
        tone=step.tone,
        headline=step.headline,
        detail=step.detail,
        ended=ended,
        aborting=aborting,
        can_abort=entry.state in ABORTABLE and not aborting,
        version=version(entry, aborting=aborting),
    )


def version(entry: service.EntryView, *, aborting: bool) -> str:
    """A short digest of everything about the entry that changes what the page shows.
    Not whether the hub answered in time: the page keeps saying `LATE` until the entry
    moves (a read of the same version would say "Checking the door…" again)."""
    seen = f"{entry.state}|{entry.alert}|{entry.challenge}|{entry.reason}|{aborting}"
    return hashlib.sha256(seen.encode()).hexdigest()[:16]
