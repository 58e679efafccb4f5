"""What a guest or worker is told about their entry at each step, in one place.

The same shape as the courier's (`courier_web.progress`: a headline in big type, a
detail under it, a tone, a version to long-poll with), in a visitor's words: nobody
here carries a parcel. An ended entry's detail is the entry's own advice (the API's
`advice`), except where that advice speaks to couriers about parcels.
"""

from __future__ import annotations

from doorstep.access import service
from doorstep.access.models import OPEN_STATES, EntryState
from doorstep.access.router import entry_read
from doorstep.courier_web.progress import Step, version
from doorstep.courier_web.schemas import CourierEntryRead
from doorstep.protocol.codes import Reason
from doorstep.protocol.messages import Alert

STAY = "Stay by the door."
# As the courier's `LATE`: the hub did not answer within the wait (the app's 202).
LATE = Step(
    "late",
    "warn",
    "The door has not answered yet",
    "Stay by the door: it may still open. This page carries on when it answers.",
)
LOCKING = Step("locking", "warn", "Locking…", "Stay until the lock confirms.")
_OPEN: dict[str, Step] = {
    EntryState.AWAITING_APPROVAL: Step("waiting", "warn", "Waiting for the resident…", STAY),
    EntryState.AUTHORIZED: Step("checking", "muted", "Checking the door…", STAY),
    EntryState.UNLOCKED: Step(
        "unlocked", "ok", "Door unlocked — come in", "Open the door and go in."
    ),
    EntryState.OPENED: Step(
        "inside",
        "ok",
        "Close the door behind you — it locks itself",
        "When you leave, pull the door shut; this page says when it is locked.",
    ),
    EntryState.CLOSED: LOCKING,
    EntryState.LOCKED: LOCKING,
}
_ALERTS: dict[str, Step] = {
    Alert.RELOCK_FAILED: Step(
        "alert", "alert", "The door did not lock — stay and call the resident",
        "Do not leave the door unlocked.",
    ),
    Alert.DOOR_HELD_OPEN: Step(
        "alert", "alert", "The door is still open — close it now", "It locks itself once shut."
    ),
    Alert.CAMERA_LOST: Step(
        "alert", "alert", "The camera stopped — finish now and close the door",
        "Step out and close the door; it locks itself.",
    ),
    Alert.LOCKED_WHILE_OPEN: Step(
        "alert", "alert", "The bolt is out but the door is open — stay and call the resident",
        "Close the door; do not leave it like this.",
    ),
}  # fmt: skip
_ENDED: dict[str, tuple[str, str]] = {  # state -> (tone, headline); the detail is the advice
    EntryState.DONE: ("ok", "Door locked — all done"),
    EntryState.DENIED: ("alert", "The door stays locked"),
    EntryState.REFUSED: ("alert", "The door did not open"),
    EntryState.EXPIRED: ("alert", "The door did not answer"),
    EntryState.DECLINED: ("alert", "The resident declined"),
    EntryState.ABORTED: ("warn", "Entry ended"),
}
DONE_DETAIL = "The door is closed and locked. Thank you."
ASK = "Try again in a minute; if it still does not open, call the resident."
# The courier's advice where it speaks of parcels, in a visitor's words.
_ADVICE: dict[str, str] = {
    Reason.HUB_OFFLINE: "The home's hub is offline; call the resident.",
    Reason.LOCK_NOT_READY: "The lock is not ready; call the resident.",
    Reason.CAMERA_NOT_LIVE: "The home's camera is not recording, so the door stays locked; "
    "call the resident.",
    Reason.HUB_TIMEOUT: "The door did not answer in time; try again in a minute.",
    Reason.TOO_MANY_ATTEMPTS: "Too many attempts; wait a while, or call the resident.",
    Reason.LOCK_JAMMED: "The lock is jammed; call the resident.",
    Reason.DOOR_OPEN: "The door is not shut and locked, so no entry can start; do not go "
    "in, and call the resident.",
    Reason.ACTUATOR_FAILED: "The lock did not open; try again in a minute, or call the resident.",
    Reason.TOKEN_REVOKED: "Your access was withdrawn; ask the resident.",
    **dict.fromkeys(
        (
            Reason.TOKEN_NOT_YET_VALID,
            Reason.TOKEN_MALFORMED,
            Reason.TOKEN_ALGORITHM,
            Reason.TOKEN_UNKNOWN_KEY,
            Reason.TOKEN_SIGNATURE,
            Reason.TOKEN_AUDIENCE,
            Reason.TOKEN_SCOPE,
            Reason.TOKEN_ENTRY_MISMATCH,
            Reason.BAD_MESSAGE,
            Reason.UNSUPPORTED_VERSION,
        ),
        "The door could not check your access; call the resident.",
    ),
}


def advice(entry: service.EntryView, api_advice: str | None) -> str:
    return _ADVICE.get(entry.reason or "", api_advice or ASK)


def describe(entry: service.EntryView, api_advice: str | None, *, unanswered: bool = False) -> Step:
    """What the page says; `unanswered`: the hub did not answer the request or proof
    within the wait (`access.router.Sent`)."""
    state = entry.state
    if state not in OPEN_STATES:
        tone, headline = _ENDED.get(state, ("alert", "Entry ended"))
        detail = DONE_DETAIL if state == EntryState.DONE else advice(entry, api_advice)
        return Step(str(state), tone, headline, detail)
    if entry.alert in _ALERTS:
        return _ALERTS[entry.alert]
    if state == EntryState.AUTHORIZED and entry.to_sign:
        return Step("proving", "muted", "Confirming with this phone…", STAY)
    if state == EntryState.AUTHORIZED and unanswered:
        return LATE
    return _OPEN[state]


def read(entry: service.EntryView, *, unanswered: bool = False) -> CourierEntryRead:
    """The entry as the guest app shows it (the courier app's schema; nothing to abort);
    `unanswered` as for `describe`."""
    base = entry_read(entry)
    step = describe(entry, base.advice, unanswered=unanswered)
    return CourierEntryRead(
        **base.model_dump(),
        step=step.step,
        tone=step.tone,
        headline=step.headline,
        detail=step.detail,
        ended=entry.state not in OPEN_STATES,
        aborting=False,
        can_abort=False,
        version=version(entry, aborting=False),
    )
