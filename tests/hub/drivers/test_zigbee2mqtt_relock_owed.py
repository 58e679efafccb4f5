"""The Zigbee2MQTT driver owes a lock after an unlock with no known outcome, and keeps
owing it until it is on the wire: a relock that cannot go out now goes out once the
lock is reachable again. Real Mosquitto and the Zigbee2MQTT peer (conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTErrorCode

from doorstep.hub.lock import (
    LockOperation,
    LockOperationError,
    LockOperationType,
    OperationError,
    OperationSource,
)
from doorstep.protocol.mqtt import close, connect, make_client

from .conftest import WAIT, Rig
from .z2m_peer import LOCK

LOCK_, UNLOCK = LockOperationType.LOCK, LockOperationType.UNLOCK
REMOTE, AUTO = OperationSource.REMOTE, OperationSource.AUTO
UNLOCK_SENT = {"state": "UNLOCK"}
RELOCK_SENT = {"state": "LOCK"}
RELOCK_JSON = '{"state":"LOCK"}'  # as the driver sends it


def _drop_the_driver_off_the_broker(rig: Rig) -> None:
    """Lose the driver's broker link, as a network blip would: the broker makes a user's
    name its client id, so a second login as the driver's user takes its session over.
    The intruder leaves at once; paho reconnects the driver by itself about 1 s later."""
    address = rig.broker.address("z2m-hub")
    intruder = make_client(address.username, address)
    connect(intruder, address)
    close(intruder)


def _cut_off(rig: Rig, cause: str) -> Callable[[], None]:
    """Take the lock out of reach by `cause`; return what brings it back."""
    if cause == "broker":
        _drop_the_driver_off_the_broker(rig)
        return lambda: None
    if cause == "bridge":
        rig.peer.set_bridge(False)
        return lambda: rig.peer.set_bridge(True)
    rig.peer.set_available(LOCK, False)
    return lambda: rig.peer.set_available(LOCK, True)


@pytest.mark.parametrize("cause", ["broker", "bridge", "lock"])
def test_an_unlock_cut_off_before_its_report_is_relocked_once_the_lock_is_back(
    rig: Rig, cause: str
) -> None:
    # The unlock went out, but the lock was out of reach before any report: it may
    # still have turned (or turn later), so the driver owes a lock.
    driver, events = rig.driver()
    rig.peer.script[(LOCK, "UNLOCK")] = "silent"
    driver.unlock(REMOTE)
    assert rig.peer.wait_for(lambda got: any(c.body == UNLOCK_SENT for c in got))

    bring_back = _cut_off(rig, cause)

    assert events.wait(1) == [LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)]
    bring_back()
    assert events.wait(2)[1] == LockOperation(LOCK_, AUTO)
    assert rig.peer.wait_for(lambda got: any(c.body == RELOCK_SENT for c in got))
    assert rig.peer.commands(LOCK, "set") == [UNLOCK_SENT, RELOCK_SENT]


class _RefusingPublish:
    """paho's `Client.publish`, refusing the driver's lock command while `refusing`,
    as paho does when its socket has just gone (MQTT_ERR_NO_CONN)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.refusing = True
        self.refused = threading.Event()
        real_publish = paho.Client.publish

        def publish(
            client: paho.Client, topic: str, payload: Any = None, *args: Any, **kwargs: Any
        ) -> paho.MQTTMessageInfo:
            if self.refusing and topic.endswith(f"/{LOCK}/set") and payload == RELOCK_JSON:
                self.refused.set()
                info = paho.MQTTMessageInfo(0)
                info.rc = MQTTErrorCode.MQTT_ERR_NO_CONN
                return info
            return real_publish(client, topic, payload, *args, **kwargs)

        monkeypatch.setattr(paho.Client, "publish", publish)


def test_a_relock_the_broker_would_not_take_goes_out_when_the_link_is_back(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, events = rig.driver(command_timeout=0.3)
    rig.peer.script[(LOCK, "UNLOCK")] = "silent"
    publish = _RefusingPublish(monkeypatch)

    driver.unlock(REMOTE)  # times out, and the relock after it cannot be sent

    assert publish.refused.wait(WAIT)
    assert events.wait(1) == [LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)]
    publish.refusing = False
    _drop_the_driver_off_the_broker(rig)  # the link goes down, and comes back

    assert events.wait(2)[1] == LockOperation(LOCK_, AUTO)
    assert rig.peer.wait_for(lambda got: any(c.body == RELOCK_SENT for c in got))
    assert rig.peer.commands(LOCK, "set") == [UNLOCK_SENT, RELOCK_SENT]


def test_no_unlock_goes_out_while_a_relock_is_owed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, events = rig.driver(command_timeout=0.3)
    rig.peer.script[(LOCK, "UNLOCK")] = "silent"
    publish = _RefusingPublish(monkeypatch)
    driver.unlock(REMOTE)
    assert publish.refused.wait(WAIT)
    events.wait(1)
    publish.refusing = False
    rig.peer.script[(LOCK, "UNLOCK")] = "normal"

    driver.unlock(REMOTE)  # the link looks up, and a relock is still owed: it goes first

    assert rig.peer.wait_for(lambda got: sum(c.leaf == "set" for c in got) >= 2)
    assert rig.peer.commands(LOCK, "set")[:2] == [UNLOCK_SENT, RELOCK_SENT]


def test_the_hub_s_relock_joins_the_relock_owed_instead_of_failing_as_motor_busy(
    rig: Rig,
) -> None:
    # The hub relocks (the door closed) while the driver's own relock is moving the
    # bolt: that is the same movement, not a failure to report, nor a retry to burn.
    driver, events = rig.driver(command_timeout=1.0)
    rig.peer.script[(LOCK, "UNLOCK")] = "silent"
    rig.peer.script[(LOCK, "LOCK")] = "silent"  # the lock's report is played below
    driver.unlock(REMOTE)
    assert rig.peer.wait_for(lambda got: any(c.body == RELOCK_SENT for c in got))

    driver.lock(AUTO)
    rig.peer.report(LOCK, rig.peer.fragments["operation_lock_rf"])
    rig.peer.report(LOCK, rig.peer.fragments["lock_locked"])
    rig.peer.report(LOCK, {"battery": 55})  # read after them: every event is in by then

    assert driver.wait_for(lambda status: status.battery_percent == 55, WAIT)
    assert events.snapshot() == [
        LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED),
        LockOperation(LOCK_, AUTO),
    ]
    assert rig.peer.commands(LOCK, "set") == [UNLOCK_SENT, RELOCK_SENT]


@pytest.mark.parametrize("cause", ["broker", "bridge", "lock"])
def test_a_relock_cut_off_before_its_report_is_sent_again_once_the_lock_is_back(
    rig: Rig, cause: str
) -> None:
    # The hub relocked after the door closed; the lock went out of reach before it
    # reported. The bolt may still be open, and the hub has given up by the time the
    # lock is back: the driver owes the relock.
    driver, events = rig.driver()
    driver.unlock(REMOTE)
    events.wait(1)
    rig.peer.script[(LOCK, "LOCK")] = "silent"
    driver.lock(AUTO)
    assert rig.peer.wait_for(lambda got: any(c.body == RELOCK_SENT for c in got))

    bring_back = _cut_off(rig, cause)

    assert events.wait(2)[1] == LockOperationError(LOCK_, AUTO, OperationError.UNSPECIFIED)
    bring_back()
    assert rig.peer.wait_for(lambda got: [c.body for c in got].count(RELOCK_SENT) == 2)
    assert rig.peer.commands(LOCK, "set") == [UNLOCK_SENT, RELOCK_SENT, RELOCK_SENT]
    # The lock acts on it (played here: the peer reads its script when its motor stops,
    # and the first relock's motor may stop only now).
    rig.peer.report(LOCK, rig.peer.fragments["operation_lock_rf"])
    rig.peer.report(LOCK, rig.peer.fragments["lock_locked"])
    assert events.wait(3)[2] == LockOperation(LOCK_, AUTO)
