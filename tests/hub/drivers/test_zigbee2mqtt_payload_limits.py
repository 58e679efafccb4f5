"""The Zigbee2MQTT driver reads no payload past its size cap, and no JSON nested past
what the parser can take: either is dropped with a warning that names the topic and
never the payload, and changes nothing. One far past the cap is not even sent by the
broker (the client's MQTT 5 Maximum Packet Size). Real Mosquitto and the Zigbee2MQTT
peer."""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as paho
import pytest

from doorstep.hub.drivers._zigbee2mqtt.payloads import MAX_PAYLOAD_BYTES
from doorstep.hub.lock import LockState

from .conftest import WAIT, Rig
from .z2m_peer import LOCK

CODE = "73915"  # a keypad code in the payload (the `expose_pin` option): never logged


def _oversized_unlocked_report() -> bytes:
    document = {
        "lock_state": "unlocked",
        "state": "UNLOCK",
        "users": {"3": {"status": "enabled", "pin_code": CODE}},
        "padding": "z" * MAX_PAYLOAD_BYTES,
    }
    return json.dumps(document).encode()


def _nested_past_the_parser(depth: int = 5000) -> bytes:
    return b'{"lock_state":"unlocked","x":' + b'{"x":' * depth + b"1" + b"}" * (depth + 1)


@pytest.mark.parametrize(
    ("leaf", "payload"),
    [
        (LOCK, _oversized_unlocked_report()),
        (LOCK, _nested_past_the_parser()),
        (f"{LOCK}/availability", b'{"state":"offline","x":"' + b"z" * MAX_PAYLOAD_BYTES + b'"}'),
        (f"{LOCK}/availability", b'{"state":"offline","x":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ],
    ids=["oversized", "nested", "oversized_presence", "nested_presence"],
)
def test_a_payload_past_the_limits_is_dropped_naming_only_its_topic(
    rig: Rig, caplog: pytest.LogCaptureFixture, leaf: str, payload: bytes
) -> None:
    driver, events = rig.driver()
    assert len(_nested_past_the_parser()) < MAX_PAYLOAD_BYTES  # the cap alone lets it in

    rig.peer.publish_raw(leaf, payload)
    rig.peer.report(LOCK, {"battery": 55})  # read after it

    assert driver.wait_for(lambda status: status.battery_percent == 55, WAIT)
    status = driver.status()
    assert status.online and status.lock_state == LockState.LOCKED
    assert events.snapshot() == []
    dropped = [r for r in caplog.records if rig.peer.topic(leaf) in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.WARNING]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    for fragment in (CODE, "zzzz", '{"x":{"x":', "[[[["):
        assert fragment not in caplog.text


def test_a_message_far_past_the_cap_never_reaches_the_hub(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The cap alone is checked after paho has read the whole message into memory. The
    # Maximum Packet Size announced in CONNECT has the broker drop it instead.
    received = _BytesRead(monkeypatch)
    driver, events = rig.driver()
    huge = b'{"lock_state":"unlocked","x":"' + b"z" * (4 * 1024 * 1024) + b'"}'

    rig.peer.publish_raw(LOCK, huge)
    rig.peer.report(LOCK, {"battery": 55})  # read after it

    assert driver.wait_for(lambda status: status.battery_percent == 55, WAIT)
    assert received.total < MAX_PAYLOAD_BYTES, received.total
    assert events.snapshot() == []
    assert driver.status().lock_state == LockState.LOCKED
    assert "zzzz" not in caplog.text


class _BytesRead:
    """Every byte any paho client in this process reads from its socket (the peer
    subscribes to no device state, so the driver's client reads the lock's)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.total = 0
        real_recv = paho.Client._sock_recv

        def recv(client: paho.Client, bufsize: int) -> bytes:
            data = real_recv(client, bufsize)
            self.total += len(data)
            return data

        monkeypatch.setattr(paho.Client, "_sock_recv", recv)
