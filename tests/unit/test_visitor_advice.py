"""A guest or a provider's worker is never told what a courier is: to leave a parcel at
the door or tell dispatch. Every refusal a visit can meet at the door reads in their
words (`visitor_web.progress`), whatever the courier's advice for it says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from doorstep.access.service import EntryView
from doorstep.protocol.codes import COURIER_ADVICE, Reason
from doorstep.visitor_web import progress

# What the hub (or the service, for the hub) can answer any entry, a visit's included.
AT_THE_DOOR = [
    Reason.HUB_OFFLINE, Reason.HUB_TIMEOUT, Reason.LOCK_NOT_READY, Reason.CAMERA_NOT_LIVE,
    Reason.LOCK_JAMMED, Reason.DOOR_OPEN, Reason.ACTUATOR_FAILED, Reason.TOKEN_REVOKED,
    Reason.TOKEN_NOT_YET_VALID, Reason.TOKEN_MALFORMED, Reason.TOKEN_ALGORITHM,
    Reason.TOKEN_UNKNOWN_KEY, Reason.TOKEN_SIGNATURE, Reason.TOKEN_AUDIENCE,
    Reason.TOKEN_SCOPE, Reason.TOKEN_ENTRY_MISMATCH, Reason.BAD_MESSAGE,
    Reason.UNSUPPORTED_VERSION,
]  # fmt: skip
COURIER_WORDS = ("parcel", "leave it at the door", "dispatch")


@pytest.mark.parametrize("reason", AT_THE_DOOR)
def test_a_visitor_refused_at_the_door_reads_a_visitors_advice(reason: Reason) -> None:
    entry = EntryView("ent-x", "refused", reason, None, "home-x", "hub-x", datetime.now(UTC))
    said = progress.advice(entry, COURIER_ADVICE.get(reason))
    assert said
    assert not any(word in said.lower() for word in COURIER_WORDS), said
