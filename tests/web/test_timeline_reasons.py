"""What the resident's timeline says about an entry the hub refused: never more than
the hub knows. An unlock the lock did not confirm may have moved the bolt (a jam
part-way, an answer lost while the unlock still landed; the hub relocks either), so it
is not told as a door that stayed locked; a lock out of the hub's reach was never moved."""

from __future__ import annotations

from doorstep.access.models import EntryState
from doorstep.protocol.codes import Reason
from doorstep.web.status import Tone
from doorstep.web.timeline import outcome_of


def test_a_failed_unlock_is_not_told_as_a_door_that_stayed_locked() -> None:
    outcome, tone, why = outcome_of(EntryState.REFUSED, Reason.ACTUATOR_FAILED)

    assert (outcome, tone) == ("Refused by your hub", Tone.ALERT)
    assert why is not None
    assert "stayed locked" not in why
    assert "your hub locks it again" in why


def test_a_lock_out_of_reach_is_told_as_never_moved() -> None:
    _, _, why = outcome_of(EntryState.REFUSED, Reason.LOCK_NOT_READY)

    assert why == "Your hub could not reach the lock; the bolt was not moved."
