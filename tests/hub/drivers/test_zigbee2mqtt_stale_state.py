"""The Zigbee2MQTT driver: stale and undefined readings must not read as a fresh,
secure state. Real Mosquitto and the Zigbee2MQTT peer (conftest.py)."""

from __future__ import annotations

import pytest

from doorstep.hub.lock import (
    DoorState,
    DoorStateChange,
    LockError,
    LockState,
    OperationSource,
)

from .conftest import WAIT, Rig
from .z2m_peer import LOCK

REMOTE = OperationSource.REMOTE


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
