"""The Zigbee2MQTT driver reports a movement done only on evidence that the lock made it:
Zigbee2MQTT republishes its cached state with every message, and a `/get` answer may
have been read before the command landed, so a report of the state the bolt was
already in is no answer to a request. Real Mosquitto and the Zigbee2MQTT peer."""

from __future__ import annotations

import pytest

from doorstep.hub.drivers.zigbee2mqtt import Zigbee2MqttLock
from doorstep.hub.lock import (
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)

from .conftest import Events, Rig
from .z2m_peer import LOCK

LOCK_, UNLOCK = LockOperationType.LOCK, LockOperationType.UNLOCK
REMOTE, AUTO = OperationSource.REMOTE, OperationSource.AUTO
UNLOCK_FAILED = LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
RELOCK_FAILED = LockOperationError(LOCK_, AUTO, OperationError.UNSPECIFIED)
RELOCK_SENT = {"state": "LOCK"}


def _relock_in_motion_that_the_lock_ignores(rig: Rig) -> tuple[Zigbee2MqttLock, Events]:
    """An unlock that reports nothing in time, so the driver sends the relock it owes;
    the lock, still busy with the unlock, does not act on that relock."""
    driver, events = rig.driver(command_timeout=1.0)
    rig.peer.script[(LOCK, "UNLOCK")] = "silent"  # its report, if any, comes late, below
    rig.peer.script[(LOCK, "LOCK")] = "silent"
    driver.unlock(REMOTE)
    assert rig.peer.wait_for(lambda got: any(c.body == RELOCK_SENT for c in got))
    return driver, events


def test_the_late_unlock_merged_into_a_cached_locked_state_is_not_the_relock_done(
    rig: Rig,
) -> None:
    # The unlock lands after all. Zigbee2MQTT publishes its operation event merged into
    # the cached state, which still says "locked": not the relock done, and the
    # resident must not read "locked" while the door is open.
    driver, events = _relock_in_motion_that_the_lock_ignores(rig)
    fragments = rig.peer.fragments

    rig.peer.report(LOCK, fragments["operation_unlock_rf"])
    rig.peer.report(LOCK, fragments["lock_unlocked"])

    assert events.wait(3) == [UNLOCK_FAILED, LockOperation(UNLOCK, REMOTE), RELOCK_FAILED]
    assert driver.status().lock_state == LockState.UNLOCKED


@pytest.mark.parametrize(
    "stale",
    [{"lock_state": "locked", "state": "LOCK"}, {"battery": 55}],
    ids=["read_answered_before_the_command_landed", "unrelated_report_of_the_cache"],
)
def test_a_report_of_the_bolt_where_it_already_was_does_not_complete_a_request(
    rig: Rig, stale: dict[str, object]
) -> None:
    # The relock's motor never ran: the request ends in a failure, not in "locked".
    _, events = _relock_in_motion_that_the_lock_ignores(rig)

    rig.peer.report(LOCK, stale)

    assert events.wait(2) == [UNLOCK_FAILED, RELOCK_FAILED]


def test_the_lock_s_operation_event_is_evidence_when_the_bolt_was_already_there(
    rig: Rig,
) -> None:
    # The unlock never landed: the bolt was locked all along, and the lock says it
    # locked again on the relock (its operation event, then its state).
    _, events = _relock_in_motion_that_the_lock_ignores(rig)
    fragments = rig.peer.fragments

    rig.peer.report(LOCK, fragments["operation_lock_rf"])

    assert events.wait(2) == [UNLOCK_FAILED, LockOperation(LOCK_, AUTO)]
