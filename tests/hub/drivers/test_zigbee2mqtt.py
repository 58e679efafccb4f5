"""The Zigbee2MQTT lock driver against a real Mosquitto and a peer playing Zigbee2MQTT.

The peer publishes golden converter output for a Yale YRD256 and a SONOFF SNZB-04
(fixtures/zigbee2mqtt_fixtures.md). Every wait is on an event, a received command or a status
condition, bounded by `WAIT`; none sleeps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub.agent import HubAgent
from doorstep.hub.drivers.zigbee2mqtt import (
    DeviceKind,
    PinSlotChange,
    PinSlotStatus,
    Zigbee2MqttLock,
    Zigbee2MqttSettings,
    discover_locks,
    parse_bridge_devices,
)
from doorstep.hub.journal import Journal
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
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
from doorstep.protocol import PROTOCOL_VERSION
from doorstep.protocol.grants import (
    GrantClaims,
    GrantSigner,
    GrantVerifier,
    audience_for,
    new_token_id,
    public_key_bytes,
)
from doorstep.protocol.messages import Command, CommandKind, EventKind, b64encode

from .conftest import WAIT, Events, Rig, Z2mBroker
from .z2m_peer import ALARM_LOCK, LOCK, SENSOR, load_bridge_devices

LOCK_, UNLOCK = LockOperationType.LOCK, LockOperationType.UNLOCK
REMOTE = OperationSource.REMOTE


# --- configuration and discovery --------------------------------------------------------


def test_config_defaults_and_refusals() -> None:
    settings = Zigbee2MqttSettings.from_config({"host": "10.0.0.2", "lock": "front_door"})
    assert settings.broker.base_topic == "zigbee2mqtt"
    assert settings.broker.port == 1883
    assert settings.broker.topic("front_door", "set") == "zigbee2mqtt/front_door/set"
    assert settings.require_availability and settings.contact_sensor is None

    secret = {"host": "h", "lock": "l", "password": "hunter22"}
    assert "hunter22" not in repr(Zigbee2MqttSettings.from_config(secret))
    for bad in (
        {"host": "h"},  # no lock
        {"host": "h", "lock": "l", "lcok_timeout": 3},  # a typo is refused, not ignored
        {"host": "h", "lock": "door/#"},  # a wildcard would reach other devices
        {"host": "h", "lock": "l", "port": "1883"},
        {"host": "h", "lock": "l", "contact_sensor": "l"},
        {"host": "h", "lock": "l", "command_timeout": 0},
    ):
        with pytest.raises(ValueError):
            Zigbee2MqttSettings.from_config(bad)


def test_bridge_devices_lists_the_yale_locks_and_the_contact_sensor() -> None:
    found = parse_bridge_devices(load_bridge_devices())

    assert [lock.friendly_name for lock in found.locks] == [LOCK, ALARM_LOCK]
    yale = found.locks[0]
    assert (yale.kind, yale.model, yale.vendor) == (DeviceKind.LOCK, "YRD256HA20BP", "Yale")
    assert {"state", "lock_state", "pin_code", "battery", "auto_relock_time"} <= yale.properties
    assert [sensor.friendly_name for sensor in found.contact_sensors] == [SENSOR]
    assert "contact" in found.contact_sensors[0].properties


def test_bridge_devices_skips_what_it_cannot_use(caplog: pytest.LogCaptureFixture) -> None:
    lock_entry = load_bridge_devices()[1]
    odd = [
        "not a device",
        {**lock_entry, "friendly_name": "disabled_lock", "disabled": True},
        {**lock_entry, "friendly_name": "joining_lock", "interview_completed": False},
        {**lock_entry, "friendly_name": "broken", "definition": {"exposes": "?"}},
        {"type": "Router", "friendly_name": "plug", "definition": {"exposes": []}},
    ]
    assert parse_bridge_devices(odd).locks == ()
    assert "malformed" in caplog.text
    with pytest.raises(ValueError):
        parse_bridge_devices({"devices": []})


def test_discovery_reads_bridge_devices_from_the_broker(rig: Rig) -> None:
    config = rig.broker.config("z2m-setup", rig.peer.base)

    found = discover_locks(config, timeout=WAIT)

    assert [lock.friendly_name for lock in found.locks] == [LOCK, ALARM_LOCK]
    assert [sensor.friendly_name for sensor in found.contact_sensors] == [SENSOR]


def test_discovery_gives_up_when_no_zigbee2mqtt_publishes(z2m_broker: Z2mBroker) -> None:
    config = z2m_broker.config("z2m-setup", "doorstep/hubs/nobody/zigbee2mqtt")
    with pytest.raises(TimeoutError):
        discover_locks(config, timeout=0.3)


# --- moving the bolt ----------------------------------------------------------------------


def test_ready_status_comes_from_the_lock_and_the_sensor(rig: Rig) -> None:
    driver, _ = rig.driver()

    status = driver.status()
    assert status.online and status.secure and not status.jammed
    assert (status.lock_state, status.door_state) == (LockState.LOCKED, DoorState.CLOSED)
    assert status.battery_percent == 87  # batteryPercentageRemaining 174, halved
    assert driver.auto_relock_seconds == 30
    assert rig.peer.commands(LOCK, "get")[0] == {"state": ""}  # it asked, not assumed


def test_unlock_open_close_lock_in_order(rig: Rig) -> None:
    driver, events = rig.driver()

    driver.unlock(REMOTE)
    assert events.wait(1) == [LockOperation(UNLOCK, REMOTE)]
    assert driver.status().lock_state == LockState.UNLOCKED
    rig.peer.open_door()
    rig.peer.close_door()
    driver.lock(OperationSource.AUTO)

    assert events.wait(4) == [
        LockOperation(UNLOCK, REMOTE),
        DoorStateChange(DoorState.OPEN),
        DoorStateChange(DoorState.CLOSED),
        LockOperation(LOCK_, OperationSource.AUTO),
    ]
    assert driver.status().secure
    assert rig.peer.commands(LOCK, "set") == [{"state": "UNLOCK"}, {"state": "LOCK"}]


def test_a_second_request_while_the_motor_runs_is_refused_as_an_event(rig: Rig) -> None:
    driver, events = rig.driver()
    rig.peer.motor_seconds = 0.3

    driver.unlock(REMOTE)
    driver.unlock(OperationSource.KEYPAD)

    assert events.wait(2) == [
        LockOperationError(UNLOCK, OperationSource.KEYPAD, OperationError.UNSPECIFIED),
        LockOperation(UNLOCK, REMOTE),
    ]
    assert rig.peer.commands(LOCK, "set") == [{"state": "UNLOCK"}]


def test_who_moved_the_bolt_comes_from_the_operation_event(rig: Rig) -> None:
    _, events = rig.driver()
    fragments = rig.peer.fragments

    rig.peer.report(LOCK, fragments["operation_unlock_keypad_user3"])
    rig.peer.report(LOCK, fragments["lock_unlocked"])
    rig.peer.report(LOCK, fragments["operation_manual_lock"])
    rig.peer.report(LOCK, fragments["lock_locked"])

    assert events.wait(2) == [
        LockOperation(UNLOCK, OperationSource.KEYPAD),
        LockOperation(LOCK_, OperationSource.MANUAL),
    ]


@pytest.mark.parametrize("device", [LOCK, ALARM_LOCK], ids=["lock_state", "alarm_action"])
def test_a_jam_on_lock_raises_the_alarm_and_fails_the_request(rig: Rig, device: str) -> None:
    driver, events = rig.driver(lock=device, contact_sensor=None)
    driver.unlock(REMOTE)
    events.wait(1)
    rig.peer.script[(device, "LOCK")] = "jam"

    driver.lock(OperationSource.AUTO)

    assert events.wait(3)[1:] == [
        DoorLockAlarm(AlarmCode.LOCK_JAMMED),
        LockOperationError(LOCK_, OperationSource.AUTO, OperationError.UNSPECIFIED),
    ]
    status = driver.status()
    assert status.jammed and status.lock_state == LockState.NOT_FULLY_LOCKED
    assert not status.secure

    rig.peer.script[(device, "LOCK")] = "normal"  # a hand frees the bolt; it locks again
    driver.lock(OperationSource.MANUAL)
    assert events.wait(4)[3] == LockOperation(LOCK_, OperationSource.MANUAL)
    assert not driver.status().jammed


def test_a_timed_out_unlock_fails_and_sends_a_lock(rig: Rig) -> None:
    driver, events = rig.driver(command_timeout=0.3)
    rig.peer.script[(LOCK, "UNLOCK")] = "silent"

    driver.unlock(REMOTE)

    assert events.wait(2) == [
        LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED),
        LockOperation(LOCK_, OperationSource.AUTO),
    ]
    assert rig.peer.commands(LOCK, "set") == [{"state": "UNLOCK"}, {"state": "LOCK"}]


# --- offline: fail closed -------------------------------------------------------------------


def test_lock_going_offline_mid_entry_and_coming_back(rig: Rig) -> None:
    driver, events = rig.driver()
    driver.unlock(REMOTE)
    events.wait(1)
    rig.peer.script[(LOCK, "LOCK")] = "silent"  # the relock goes out; no answer comes
    driver.lock(OperationSource.AUTO)
    assert rig.peer.wait_for(lambda got: len(got) >= 3)

    rig.peer.set_available(LOCK, False)

    assert events.wait(2)[1] == LockOperationError(
        LOCK_, OperationSource.AUTO, OperationError.UNSPECIFIED
    )
    assert driver.wait_for(lambda status: not status.online, WAIT)
    assert driver.status().lock_state == LockState.UNLOCKED  # the last word, not a guess
    with pytest.raises(LockError, match="offline"):
        driver.unlock(REMOTE)
    with pytest.raises(LockError, match="offline"):
        driver.lock(OperationSource.AUTO)

    gets = len(rig.peer.commands(LOCK, "get"))
    rig.peer.script[(LOCK, "LOCK")] = "normal"
    rig.peer.set_available(LOCK, True)
    assert driver.wait_for(lambda status: status.online, WAIT)
    assert len(rig.peer.commands(LOCK, "get")) == gets + 1  # a fresh read, not the cache
    driver.lock(OperationSource.AUTO)
    assert events.wait(3)[2] == LockOperation(LOCK_, OperationSource.AUTO)


def test_bridge_offline_takes_every_lock_offline(rig: Rig) -> None:
    driver, _ = rig.driver()

    rig.peer.set_bridge(False)

    assert driver.wait_for(lambda status: not status.online, WAIT)
    with pytest.raises(LockError, match="bridge is offline"):
        driver.unlock(REMOTE)
    rig.peer.set_bridge(True)
    assert driver.wait_for(lambda status: status.online, WAIT)
    driver.unlock(REMOTE)


def test_nothing_is_online_before_the_lock_has_reported(rig: Rig) -> None:
    rig.peer.set_available(LOCK, False)  # so the driver's read goes unanswered
    driver, _ = rig.driver(ready=False)
    assert rig.peer.wait_for(lambda got: any(command.leaf == "get" for command in got))

    status = driver.status()
    assert not status.online and status.lock_state == LockState.NOT_FULLY_LOCKED
    with pytest.raises(LockError, match="offline"):
        driver.unlock(REMOTE)
    rig.peer.set_available(LOCK, True)
    assert driver.wait_for(lambda status: status.online, WAIT)


def test_without_availability_a_reported_state_is_enough_if_configured(rig: Rig) -> None:
    rig.peer.publish_raw(f"{LOCK}/availability", b"", retain=True)  # availability off

    strict, _ = rig.driver(ready=False)
    assert strict.wait_for(lambda status: status.lock_state == LockState.LOCKED, WAIT)
    assert not strict.status().online  # reported, but never said to be available
    strict.close()  # the broker allows one connection per user

    driver, events = rig.driver(require_availability=False)
    driver.unlock(REMOTE)
    assert events.wait(1) == [LockOperation(UNLOCK, REMOTE)]


# --- the door -------------------------------------------------------------------------------


def test_contact_sensor_gives_the_door_and_silence_makes_it_unknown(rig: Rig) -> None:
    driver, events = rig.driver()

    rig.peer.open_door()
    rig.peer.close_door()
    rig.peer.set_available(SENSOR, False)

    assert events.wait(3) == [
        DoorStateChange(DoorState.OPEN),
        DoorStateChange(DoorState.CLOSED),
        DoorStateChange(DoorState.UNSPECIFIED_ERROR),
    ]
    assert not driver.status().secure  # an unknown door is not a closed door


def test_door_is_unknown_until_a_sensor_without_retain_reports(rig: Rig) -> None:
    rig.peer.retained.clear()
    rig.peer.publish_raw(SENSOR, b"", retain=True)  # what the old retained state was
    driver, events = rig.driver()

    assert driver.status().door_state == DoorState.UNSPECIFIED_ERROR
    assert not driver.status().secure
    rig.peer.close_door()
    assert driver.wait_for(lambda status: status.secure, WAIT)
    assert events.snapshot() == []  # where the door is, not a change of it


def test_door_state_from_the_lock_itself_when_no_sensor_is_paired(rig: Rig) -> None:
    _, events = rig.driver(contact_sensor=None)
    fragments = rig.peer.fragments

    rig.peer.report(LOCK, fragments["door_closed"])  # the first reading: no event
    rig.peer.report(LOCK, fragments["door_open"])
    rig.peer.report(LOCK, fragments["door_jammed"])

    assert events.wait(2) == [
        DoorStateChange(DoorState.OPEN),
        DoorStateChange(DoorState.JAMMED),
    ]


# --- keypad codes ---------------------------------------------------------------------------


def test_keypad_code_added_and_cleared_and_never_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    driver, _ = rig.driver()
    slots = Events()
    driver.subscribe_pin_slots(slots)

    driver.set_pin_code(3, "0429")
    assert slots.wait(1) == [PinSlotChange(3, PinSlotStatus.ENABLED)]
    driver.clear_pin_code(3)
    assert slots.wait(2)[1] == PinSlotChange(3, PinSlotStatus.AVAILABLE)

    assert rig.peer.commands(LOCK, "set") == [
        {
            "pin_code": {
                "user": 3,
                "user_type": "unrestricted",
                "user_enabled": True,
                "pin_code": "0429",  # a string: the leading zero survives
            }
        },
        {"pin_code": {"user": 3, "pin_code": None}},
    ]
    assert rig.peer.commands(LOCK, "get")[-2:] == [{"pin_code": {"user": 3}}] * 2
    assert driver.pin_slot(3) == PinSlotStatus.AVAILABLE
    assert "slot 3" in caplog.text
    assert "0429" not in caplog.text
    with pytest.raises(ValueError) as refused:
        driver.set_pin_code(3, "12a4")
    assert "12a4" not in str(refused.value)


def test_keypad_requests_fail_closed_when_the_lock_is_offline(rig: Rig) -> None:
    driver, _ = rig.driver()
    rig.peer.set_available(LOCK, False)
    assert driver.wait_for(lambda status: not status.online, WAIT)

    with pytest.raises(LockError):
        driver.clear_pin_code(3)
    with pytest.raises(ValueError):
        driver.set_pin_code(-1, "1234")


# --- what the broker may carry ----------------------------------------------------------------


def test_bad_payloads_are_ignored_with_a_warning(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    driver, events = rig.driver()
    bad: list[tuple[str, bytes]] = [
        (LOCK, b"\x00not json"),
        (LOCK, b"[1, 2, 3]"),
        (LOCK, b'{"lock_state": "bogus", "state": "UNLOCK"}'),
        (LOCK, b'{"lock_state": 7}'),
        (LOCK, b'{"state": "OPEN_SESAME"}'),
        (LOCK, b'{"battery": "full", "door_state": "ajar-ish", "users": 5, "action": 9}'),
        ("bridge/state", b"maybe"),
        (f"{LOCK}/availability", b'{"state": "sleeping"}'),
        (SENSOR, b'{"contact": "yes"}'),
    ]
    for leaf, payload in bad:
        rig.peer.publish_raw(leaf, payload)
    rig.peer.report(LOCK, {"battery": 55})  # published after the garbage, so seen after it

    assert driver.wait_for(lambda status: status.battery_percent == 55, WAIT)
    status = driver.status()
    assert status.online and status.secure
    assert status.lock_state == LockState.LOCKED
    assert events.snapshot() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) >= len(bad)
    assert any("lock_state='bogus'" in message for message in warnings)


# --- with the hub agent -----------------------------------------------------------------------

T = 1_800_000_000
HUB_ID = "hub-0123456789abcdef"
ENTRY = "ent-0123456789abcdef"


def _agent(tmp_path: Path, driver: Zigbee2MqttLock) -> tuple[HubAgent, Journal, bytes]:
    hub_key, issuer_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "journal.sqlite3", hub_id=HUB_ID, signing_key=hub_key)
    signer = GrantSigner(issuer_key)
    verifier = GrantVerifier(
        hub_id=HUB_ID,
        issuer_keys={signer.kid: public_key_bytes(issuer_key.public_key())},
        clock=lambda: T,
    )
    agent = HubAgent(
        hub_id=HUB_ID, journal=journal, locks={"front": driver}, verifier=verifier, clock=lambda: T
    )
    claims = GrantClaims(
        audience=audience_for(HUB_ID, "front"),
        not_before=T,
        expires=T + 600,
        issued_at=T,
        token_id=new_token_id(),
        scope=("unlock",),
        entry_id=ENTRY,
    )
    return agent, journal, signer.sign(claims)


def test_an_entry_through_the_hub_agent_ends_verified_locked(rig: Rig, tmp_path: Path) -> None:
    driver, _ = rig.driver()
    agent, journal, grant = _agent(tmp_path, driver)
    events = Events()  # subscribed after the agent: hears each event once it has acted
    driver.subscribe(events)
    fields: dict[str, Any] = {"entry_id": ENTRY, "access_point": "front"}
    command = Command(
        v=PROTOCOL_VERSION,
        command_id="cmd-00000001",
        kind=CommandKind.UNLOCK,
        not_after=T + 30,
        grant=b64encode(grant),
        **fields,
    )
    try:
        assert agent.handle_command(command.model_dump_json().encode()) is None
        events.wait(1)
        rig.peer.open_door()
        rig.peer.close_door()  # the agent relocks from inside the event delivery
        assert events.wait(4)[3] == LockOperation(LOCK_, OperationSource.AUTO)
        kinds = [event.kind for event in journal.unacknowledged(limit=100)]
        assert kinds == [
            EventKind.LOCK_UNLOCKED,
            EventKind.DOOR_OPENED,
            EventKind.DOOR_CLOSED,
            EventKind.LOCK_LOCKED,
            EventKind.ENTRY_SECURED,
        ]
        reply = journal.command_reply("cmd-00000001")
        assert reply is not None and b'"ok"' in reply
    finally:
        agent.stop()
