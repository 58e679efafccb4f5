"""The Zigbee2MQTT driver: a lock document the broker replays at subscribe time (retained)
is history, so its one-shot `action` is no keypad action, jam or hint about who moved
the bolt, and its cached jam alarm is no jam now. Real Mosquitto and the Zigbee2MQTT
peer (conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    LockEvent,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)

from .conftest import WAIT, Rig
from .test_zigbee2mqtt_relock_owed import _drop_the_driver_off_the_broker
from .z2m_peer import ALARM_LOCK, LOCK, load_fragments

KEYPAD = OperationSource.KEYPAD
# fz.lock_operation_event's fields, with its name for a refused keypad code.
REFUSED_CODE = {
    "action": "unlock_failure_invalid_pin_or_id",
    "action_user": 3,
    "action_source": 0,
    "action_source_name": "keypad",
}
JAMMED = load_fragments()["alarm_deadbolt_jammed"]  # Yale's one-shot jam, with its bolt
REFUSED = LockOperationError(LockOperationType.UNLOCK, KEYPAD, OperationError.INVALID_CREDENTIAL)


def _retain_lock_document(rig: Rig, fragment: dict[str, Any], device: str = LOCK) -> None:
    """Leave the lock's state with `fragment` retained on the broker, as Zigbee2MQTT's
    `retain: true` device option does after the publish that carried an action. The
    peer's cache is untouched: Zigbee2MQTT never caches an action."""
    rig.peer.publish(device, {**rig.peer.state(device), **fragment}, retain=True)


@pytest.mark.parametrize(
    ("device", "fragment", "event"),
    [
        (LOCK, REFUSED_CODE, REFUSED),
        (ALARM_LOCK, JAMMED, DoorLockAlarm(AlarmCode.LOCK_JAMMED)),
    ],
    ids=["keypad_refusal", "jam"],
)
def test_a_replayed_action_is_not_reported_and_a_live_one_is(
    rig: Rig, device: str, fragment: dict[str, Any], event: LockEvent
) -> None:
    _retain_lock_document(rig, fragment, device)
    driver, events = rig.driver(lock=device)  # online: the replay has been read by now

    rig.peer.report(device, fragment)  # the same action, live this time
    rig.peer.report(device, {"battery": 55})  # read after it: every event is in by then

    assert driver.wait_for(lambda status: status.battery_percent == 55, WAIT)
    assert events.snapshot() == [event]


def test_a_replayed_keypad_unlock_does_not_name_who_moves_the_bolt_next(rig: Rig) -> None:
    # A replayed "unlocked by keypad user 3" must not be taken for the operation event
    # of the next unlock the lock reports, which would credit it to a keypad code.
    _retain_lock_document(rig, rig.peer.fragments["operation_unlock_keypad_user3"])
    _, events = rig.driver()

    rig.peer.report(LOCK, rig.peer.fragments["lock_unlocked"])  # no operation event

    assert events.wait(1, WAIT) == [
        LockOperation(LockOperationType.UNLOCK, OperationSource.UNSPECIFIED)
    ]


# Yale's vendor alarm converter (devices/yale.ts `c4_alarm`, alarm code 9); Zigbee2MQTT
# caches `alarm`, so every later state it publishes still carries it.
DEADBOLT_JAMMED = {"alarm": "deadbolt_jammed", "lock_state": "not_fully_locked", "state": "UNLOCK"}


@pytest.mark.parametrize("freed", [True, False], ids=["freed_since", "still_jammed"])
def test_a_jam_alarm_replayed_after_a_reconnect_is_judged_by_the_fresh_read(
    rig: Rig, freed: bool
) -> None:
    rig.peer.retained.add(LOCK)  # Zigbee2MQTT's `retain: true`: replayed at subscribe
    driver, events = rig.driver()
    _drop_the_driver_off_the_broker(rig)
    assert driver.wait_for(lambda status: not status.online, WAIT)

    rig.peer.report(LOCK, DEADBOLT_JAMMED)  # while the hub was away (paho waits >= 1 s)
    if freed:
        rig.peer.report(LOCK, rig.peer.fragments["lock_locked"])  # a hand freed the bolt

    assert driver.wait_for(lambda status: status.online or status.jammed, WAIT)
    rig.peer.report(LOCK, {"battery": 55})  # read after the replay and the read
    assert driver.wait_for(lambda status: status.battery_percent == 55, WAIT)
    if freed:  # no jam now, and the bolt never moved as far as anyone here knows
        assert events.snapshot() == []
        assert driver.status().lock_state == LockState.LOCKED
    else:
        assert events.snapshot() == [DoorLockAlarm(AlarmCode.LOCK_JAMMED)]
        assert driver.status().jammed
