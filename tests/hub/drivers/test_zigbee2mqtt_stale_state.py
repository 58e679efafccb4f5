"""The Zigbee2MQTT driver: stale and undefined readings must not read as a fresh,
secure state. Real Mosquitto and the Zigbee2MQTT peer (conftest.py)."""

from __future__ import annotations

import pytest

from doorstep.hub.lock import (
    DoorState,
    DoorStateChange,
    LockError,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)

from .conftest import WAIT, Rig
from .z2m_peer import LOCK, SENSOR

LOCK_, UNLOCK = LockOperationType.LOCK, LockOperationType.UNLOCK
REMOTE, AUTO = OperationSource.REMOTE, OperationSource.AUTO
RELOCK_FAILED = LockOperationError(LOCK_, AUTO, OperationError.UNSPECIFIED)
RELOCK_SENT = {"state": "LOCK"}


def test_a_retained_lock_state_replayed_at_subscribe_is_not_a_fresh_report(
    rig: Rig,
) -> None:
    # Zigbee2MQTT's device option `retain: true` keeps the lock's last state on the
    # broker. The lock has since left the mesh (a battery lock's availability may take
    # hours to say so), so the driver's read goes unanswered: the replayed state is
    # history, and the lock must not count as online on it.
    rig.peer.retained.add(LOCK)
    rig.peer.report(LOCK)  # locked, now retained
    rig.peer.available[LOCK] = False  # answers nothing; availability still says online

    driver, _ = rig.driver(ready=False)

    assert driver.wait_for(lambda status: status.battery_percent == 87, WAIT)  # replay read
    assert rig.peer.wait_for(lambda got: any(c.device == LOCK and c.leaf == "get" for c in got))
    status = driver.status()
    assert not status.online, status
    with pytest.raises(LockError, match="not reported"):
        driver.unlock(REMOTE)

    rig.peer.available[LOCK] = True
    rig.peer.report(LOCK, rig.peer.fragments["lock_locked"])  # a live report
    assert driver.wait_for(lambda status: status.online, WAIT)
    assert driver.status().lock_state == LockState.LOCKED


def test_a_door_the_lock_reports_undefined_is_no_longer_closed(rig: Rig) -> None:
    # The lock's own door sensor said closed, then reports the position as undefined
    # (doorState 0xFF): the door is unknown now, not still closed.
    driver, events = rig.driver(contact_sensor=None)
    rig.peer.report(LOCK, rig.peer.fragments["door_closed"])
    assert driver.wait_for(lambda status: status.secure, WAIT)

    rig.peer.report(LOCK, {"door_state": "undefined"})

    assert driver.wait_for(lambda status: not status.secure, WAIT), driver.status()
    assert driver.status().door_state == DoorState.UNSPECIFIED_ERROR
    assert events.wait(1) == [DoorStateChange(DoorState.UNSPECIFIED_ERROR)]


def test_the_cached_state_zigbee2mqtt_sends_on_restart_is_not_the_relock_done(
    rig: Rig,
) -> None:
    # The hub relocks after a delivery; Zigbee2MQTT dies before the lock reports, and
    # comes back from a state.json saved before the unlock, so its cached state says
    # "locked". The lock does not answer (off the mesh, its availability not yet
    # timed out). The driver owes the relock and sends it; the cached "locked" is no
    # report of it, and no lock movement: the bolt is still drawn.
    driver, events = rig.driver()
    driver.unlock(REMOTE)
    assert events.wait(1) == [LockOperation(UNLOCK, REMOTE)]
    rig.peer.script[(LOCK, "LOCK")] = "silent"
    driver.lock(AUTO)
    assert rig.peer.wait_for(lambda got: any(c.body == RELOCK_SENT for c in got))
    rig.peer.available[LOCK] = False  # answers nothing from here on

    rig.peer.restart({LOCK: rig.peer.fragments["lock_locked"]})

    assert rig.peer.wait_for(lambda got: [c.body for c in got].count(RELOCK_SENT) == 2)
    rig.peer.report(LOCK, {"battery": 55})  # after the cached state: read once this is
    assert driver.wait_for(lambda status: status.battery_percent == 55, WAIT)
    assert events.snapshot() == [LockOperation(UNLOCK, REMOTE), RELOCK_FAILED]

    # The lock is back and acts on the relock: that is the relock done.
    rig.peer.available[LOCK] = True
    rig.peer.report(LOCK, rig.peer.fragments["operation_lock_rf"])
    rig.peer.report(LOCK, rig.peer.fragments["lock_locked"])
    assert events.wait(3)[2] == LockOperation(LOCK_, AUTO)
    assert driver.status().secure


def test_a_retained_door_closed_from_a_sensor_now_unavailable_is_not_the_door(
    rig: Rig,
) -> None:
    # The sensor's last state ("closed") is retained, as the set-up asks; since then
    # the sensor has gone silent (availability offline). At subscribe the broker
    # replays its availability, then that state: history, not where the door is.
    rig.peer.set_available(SENSOR, False)

    driver, events = rig.driver()  # online: the lock answered the read after the replay

    status = driver.status()
    assert status.door_state == DoorState.UNSPECIFIED_ERROR, status
    assert not status.secure

    rig.peer.set_available(SENSOR, True)
    rig.peer.close_door()  # a live report from the sensor
    assert driver.wait_for(lambda status: status.secure, WAIT), driver.status()
    assert events.wait(1) == [DoorStateChange(DoorState.CLOSED)]
