"""The Matter driver against a stand-in Matter server that replays a real door-lock node.

Every test talks real WebSocket over loopback to `matter_peer.MatterServerPeer`, which
serves Home Assistant's recorded `door_lock.json` node and enforces what a lock enforces
(timed invokes, the remote-PIN rule, motor time, jams, availability). Events are awaited
with bounded timeouts; state changes with `MatterLock.wait_for_status`.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
from collections.abc import Callable, Iterator
from datetime import time
from typing import Any

import pytest
from websockets.sync.client import connect

from doorstep.hub.drivers._matter.node import LockNode
from doorstep.hub.drivers.matter import MatterLock, MatterLockConfig
from doorstep.hub.keypad import DaysMask
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    DoorState,
    DoorStateChange,
    LockDriver,
    LockError,
    LockEvent,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    LockStatus,
    OperationError,
    OperationSource,
)
from polling import wait_until

from .matter_peer import MatterServerPeer, load_node, running_peer

REMOTE = OperationSource.REMOTE
UNLOCK, LOCK = LockOperationType.UNLOCK, LockOperationType.LOCK
UNLOCKED_REMOTELY = LockOperation(UNLOCK, REMOTE)
LOCKED_REMOTELY = LockOperation(LOCK, REMOTE)
REQUIRE_PIN = "1/257/51"
LOCK_STATE = "1/257/0"
WAIT = 5.0  # seconds: the bound on every wait; the happy path takes milliseconds
PIN = "482613"  # the fixture lock takes 6..8 digits


class Events:
    """A subscriber that queues what the driver reports."""

    def __init__(self) -> None:
        self._queue: queue.Queue[LockEvent] = queue.Queue()

    def __call__(self, event: LockEvent) -> None:
        self._queue.put(event)

    def next(self) -> LockEvent:
        try:
            return self._queue.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no lock event within {WAIT} s")

    def take(self, count: int) -> list[LockEvent]:
        return [self.next() for _ in range(count)]

    def empty_for(self, seconds: float) -> bool:
        """Whether nothing is reported for `seconds` (past a known deadline)."""
        try:
            self._queue.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[MatterServerPeer]:
    """The stand-in server with the recorded node (another fixture node by indirect
    parametrisation)."""
    with running_peer(load_node(getattr(request, "param", "matter_door_lock.json"))) as peer:
        yield peer


@pytest.fixture
def make_lock(peer: MatterServerPeer) -> Iterator[Callable[..., tuple[MatterLock, Events]]]:
    """Connect a driver to the peer (settings override the defaults); wait until online."""
    locks: list[MatterLock] = []

    def make(**settings: Any) -> tuple[MatterLock, Events]:
        config = {
            "url": peer.url,
            "node_id": peer.node_id,
            "command_timeout": WAIT,
            "open_timeout": WAIT,
            "reconnect_initial": 0.02,
            "reconnect_max": 0.1,
            **settings,
        }
        lock = MatterLock.from_config(config)
        locks.append(lock)
        events = Events()
        lock.subscribe(events)
        assert lock.wait_for_status(lambda status: status.online, WAIT), "never came online"
        return lock, events

    yield make
    for lock in locks:
        lock.close()


@pytest.fixture
def lock_and_events(
    make_lock: Callable[..., tuple[MatterLock, Events]],
) -> tuple[MatterLock, Events]:
    return make_lock()


def _until(lock: MatterLock, predicate: Callable[[LockStatus], bool]) -> None:
    assert lock.wait_for_status(predicate, WAIT), f"status stayed {lock.status()}"


# --- reading the node ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "lock_state"),
    [
        ("matter_door_lock.json", LockState.NOT_FULLY_LOCKED),
        ("matter_door_lock_with_usr.json", LockState.LOCKED),
    ],
)
def test_initial_status_comes_from_the_recorded_node(fixture: str, lock_state: LockState) -> None:
    with running_peer(load_node(fixture)) as peer:
        lock = MatterLock(MatterLockConfig(url=peer.url, node_id=1, open_timeout=WAIT))
        driver: LockDriver = lock  # what the hub agent holds
        try:
            _until(lock, lambda status: status.online)
            assert driver.status() == LockStatus(
                lock_state=lock_state,
                door_state=DoorState.CLOSED,
                battery_percent=100,  # Power Source 1/47/14 BatChargeLevel = OK
                jammed=False,
                online=True,
            )
        finally:
            driver.close()


def test_the_node_reads_fail_closed_and_ignore_other_endpoints() -> None:
    node = LockNode(node_id=1, endpoint=1)
    dump = load_node()
    attributes = dump["attributes"]
    attributes.update({"1/257/0": None, "1/47/12": 37})  # LockState null; 18.5 % battery
    del attributes["1/257/3"]  # no door position sensor
    assert node.load(dump) == []  # the first dump reports nothing
    assert (node.lock_state, node.door_state) == (
        LockState.NOT_FULLY_LOCKED,
        DoorState.UNSPECIFIED_ERROR,
    )
    assert node.battery_percent == 18
    unlocked = {"lockOperationType": 1, "operationSource": 7}
    elsewhere = [
        {"node_id": 2, "endpoint_id": 1, "cluster_id": 257, "event_id": 2, "data": unlocked},
        {"node_id": 1, "endpoint_id": 2, "cluster_id": 257, "event_id": 2, "data": unlocked},
        {"node_id": 1, "endpoint_id": 1, "cluster_id": 6, "event_id": 2, "data": unlocked},
        {
            "node_id": 1,
            "endpoint_id": 1,
            "cluster_id": 257,
            "event_id": 0,
            "data": {"alarmCode": 99},
        },
    ]
    assert [node.node_event(event) for event in elsewhere] == [[], [], [], []]
    assert node.attribute_updated([2, "1/257/3", 0]) == []
    assert node.lock_state == LockState.NOT_FULLY_LOCKED


def test_refresh_reads_the_lock_and_reports_a_change(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, events = lock_and_events
    peer.set_attribute(LOCK_STATE, 1, announce=False)  # changed on the lock, not reported
    lock.refresh()
    assert lock.status().lock_state == LockState.LOCKED
    assert events.next() == LockOperation(LOCK, OperationSource.UNSPECIFIED)


# --- lock and unlock ----------------------------------------------------------------------


def test_unlock_and_lock_are_timed_invokes_reported_by_the_lock(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, events = lock_and_events
    lock.unlock(REMOTE)
    assert events.next() == UNLOCKED_REMOTELY
    assert lock.status().lock_state == LockState.UNLOCKED
    lock.lock(OperationSource.AUTO)
    assert events.next() == LOCKED_REMOTELY  # the lock says who asked: a remote controller
    assert lock.status().secure
    sent = [(args["command_name"], args["timed_request_timeout_ms"]) for args in peer.commands]
    assert sent == [("UnlockDoor", 10_000), ("LockDoor", 10_000)]
    assert all(args["payload"] == {"PINCode": None} for args in peer.commands)


def test_peer_refuses_an_untimed_unlock_sent_raw(peer: MatterServerPeer) -> None:
    command = {
        "node_id": 1,
        "endpoint_id": 1,
        "cluster_id": 257,
        "command_name": "UnlockDoor",
        "payload": {"PINCode": None},
    }
    with connect(peer.url, proxy=None) as ws:
        assert json.loads(ws.recv(timeout=WAIT))["schema_version"] == 11  # server info
        ws.send(json.dumps({"message_id": "u1", "command": "device_command", "args": command}))
        answer = json.loads(ws.recv(timeout=WAIT))
        assert answer == {
            "message_id": "u1",
            "error_code": 0,
            "details": "InteractionModelError: NeedsTimedInteraction (0xc6)",
        }
        assert peer.accepted == 0  # refused before the motor
        timed = {**command, "timed_request_timeout_ms": 1000}
        ws.send(json.dumps({"message_id": "u2", "command": "device_command", "args": timed}))
        assert json.loads(ws.recv(timeout=WAIT)) == {"message_id": "u2", "result": None}
        assert peer.accepted == 1


def test_a_refused_command_is_one_lock_operation_error(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, events = lock_and_events
    accepted = [command for command in peer.attribute("1/257/65529") if command != 0x01]
    peer.set_attribute("1/257/65529", accepted, announce=False)  # UnlockDoor unsupported
    lock.unlock(REMOTE)
    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
    lock.lock(REMOTE)
    assert events.next() == LOCKED_REMOTELY  # nothing else came in between


def test_a_subscriber_may_call_back_in(lock_and_events: tuple[MatterLock, Events]) -> None:
    lock, events = lock_and_events

    def relock(event: LockEvent) -> None:
        if event == UNLOCKED_REMOTELY:
            lock.lock(OperationSource.AUTO)
            assert lock.status().online

    lock.subscribe(relock)
    lock.unlock(REMOTE)
    assert events.take(2) == [UNLOCKED_REMOTELY, LOCKED_REMOTELY]


# --- the remote-PIN rule ------------------------------------------------------------------


def test_without_a_configured_pin_the_request_is_not_even_sent(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, _ = lock_and_events
    peer.set_attribute(REQUIRE_PIN, True)
    lock.refresh()  # the report of 1/257/51 came before this read's answer
    with pytest.raises(LockError, match="requires a PIN"):
        lock.unlock(REMOTE)
    assert peer.commands == []


@pytest.mark.parametrize("error_event_first", [True, False])
def test_a_wrong_pin_is_refused_and_reported_once(
    peer: MatterServerPeer,
    make_lock: Callable[..., tuple[MatterLock, Events]],
    error_event_first: bool,
) -> None:
    peer.add_pin_user(user_index=1, credential_index=1, pin=PIN)
    peer.error_event_first = error_event_first
    lock, events = make_lock(pin="999999")
    peer.set_attribute(REQUIRE_PIN, True)
    lock.refresh()  # the report of 1/257/51 came before this read's answer
    lock.unlock(REMOTE)
    refusal = events.next()
    assert isinstance(refusal, LockOperationError)
    assert (refusal.operation, refusal.source) == (UNLOCK, REMOTE)
    # The lock's own report says why; the server's answer cannot. When the answer comes
    # first the driver usually reports it before the lock's word arrives.
    reasons = {OperationError.INVALID_CREDENTIAL}
    if not error_event_first:
        reasons.add(OperationError.UNSPECIFIED)
    assert refusal.error in reasons
    assert lock.status().lock_state == LockState.NOT_FULLY_LOCKED
    peer.set_attribute(REQUIRE_PIN, False)
    lock.refresh()
    lock.lock(REMOTE)
    assert events.next() == LOCKED_REMOTELY  # the second report of the refusal was dropped


def test_the_right_pin_opens_and_stays_out_of_the_logs(
    peer: MatterServerPeer,
    make_lock: Callable[..., tuple[MatterLock, Events]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    peer.add_pin_user(user_index=1, credential_index=1, pin=PIN)
    lock, events = make_lock(pin=PIN)
    peer.set_attribute(REQUIRE_PIN, True)
    lock.refresh()  # the report of 1/257/51 came before this read's answer
    lock.unlock(REMOTE)
    assert events.next() == UNLOCKED_REMOTELY
    encoded = base64.b64encode(PIN.encode()).decode()
    assert peer.commands[-1]["payload"] == {"PINCode": encoded}
    assert "sent UnlockDoor to node 1" in caplog.text
    assert PIN not in caplog.text
    assert encoded not in caplog.text


# --- faults -------------------------------------------------------------------------------


def test_a_jam_raises_the_alarm_and_fails_the_operation(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, events = lock_and_events
    peer.motor_jammed = True
    lock.unlock(REMOTE)
    assert events.take(2) == [
        DoorLockAlarm(AlarmCode.LOCK_JAMMED),
        LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED),
    ]
    status = lock.status()
    assert status.jammed
    assert status.lock_state == LockState.NOT_FULLY_LOCKED
    peer.motor_jammed = False
    lock.lock(REMOTE)
    assert events.next() == LOCKED_REMOTELY
    assert not lock.status().jammed


def test_a_lock_that_never_reports_gets_an_error_after_the_operation_timeout(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    lock, events = make_lock(operation_timeout=0.2)
    peer.silent = True
    lock.unlock(REMOTE)
    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)


def test_node_unavailable_mid_entry_fails_closed(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, events = lock_and_events
    lock.unlock(REMOTE)
    assert events.next() == UNLOCKED_REMOTELY  # the courier is inside
    peer.set_available(False)
    _until(lock, lambda status: not status.online)
    with pytest.raises(LockError, match="unavailable"):
        lock.lock(OperationSource.AUTO)
    with pytest.raises(LockError, match="unavailable"):
        lock.set_user(2)
    peer.set_available(True)
    _until(lock, lambda status: status.online)
    lock.lock(OperationSource.AUTO)
    assert events.next() == LOCKED_REMOTELY


def test_a_dropped_connection_is_offline_until_reconnected_and_the_node_reread(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, events = lock_and_events
    assert peer.wait_for_listeners(1)
    peer.refuse_connections = True
    peer.drop_connections()
    _until(lock, lambda status: not status.online)
    with pytest.raises(LockError, match="not connected"):
        lock.unlock(REMOTE)
    # While nobody listens, someone opens the door and turns the thumb-turn.
    peer.set_attribute("1/257/3", int(DoorState.OPEN), announce=False)
    peer.set_attribute(LOCK_STATE, int(LockState.UNLOCKED), announce=False)
    peer.refuse_connections = False
    _until(lock, lambda status: status.online)
    assert peer.wait_for_listeners(2)
    assert events.take(2) == [
        LockOperation(UNLOCK, OperationSource.UNSPECIFIED),
        DoorStateChange(DoorState.OPEN),
    ]
    peer.close_door()
    lock.lock(REMOTE)
    assert events.take(2) == [DoorStateChange(DoorState.CLOSED), LOCKED_REMOTELY]


def test_a_request_in_flight_when_the_connection_drops_fails(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, events = lock_and_events
    peer.hold_answers = True
    peer.silent = True
    lock.unlock(REMOTE)
    peer.drop_connections()
    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
    _until(lock, lambda status: status.online)  # and it comes back by itself


# --- the door -----------------------------------------------------------------------------


def test_each_door_change_is_reported_once(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, events = lock_and_events
    peer.open_door()  # an attribute report and a DoorStateChange event
    peer.close_door()
    assert events.take(2) == [DoorStateChange(DoorState.OPEN), DoorStateChange(DoorState.CLOSED)]
    peer.set_attribute("1/257/3", int(DoorState.AJAR))  # a report without its event
    assert events.next() == DoorStateChange(DoorState.AJAR)
    assert lock.status().door_state == DoorState.AJAR


# --- keypad users, PINs and schedules -----------------------------------------------------


def test_a_keypad_user_and_pin_are_set_and_cleared_without_logging_the_pin(
    peer: MatterServerPeer,
    lock_and_events: tuple[MatterLock, Events],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lock, _ = lock_and_events
    caplog.set_level(logging.DEBUG)
    lock.set_user(3, name="cleaner", unique_id=42)
    answer = lock.set_pin(2, PIN, user_index=3)
    assert (answer.user_index, answer.next_credential_index) == (3, 1)
    assert peer.users[3]["userName"] == "cleaner"
    assert peer.pins == {2: {"pin": PIN, "user": 3}}
    with pytest.raises(LockError, match="DUPLICATE"):
        lock.set_pin(4, PIN, user_index=3)
    lock.clear_pin(2)
    assert peer.pins == {}
    lock.clear_user(3)
    assert peer.users == {}
    timed = {args["command_name"]: args["timed_request_timeout_ms"] for args in peer.commands}
    assert timed == {
        "SetUser": 10_000,
        "SetCredential": 10_000,
        "ClearCredential": 10_000,
        "ClearUser": 10_000,
    }
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert "PIN slot 2 set for user 3" in logged
    assert PIN not in logged
    assert base64.b64encode(PIN.encode()).decode() not in logged


def test_a_pin_the_lock_cannot_hold_is_refused_before_sending(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, _ = lock_and_events
    for bad in ("1234", "123456789", "12a456"):
        with pytest.raises(ValueError, match="PIN must") as raised:
            lock.set_pin(1, bad, user_index=1)
        assert bad not in str(raised.value)
    assert peer.commands == []


def test_week_day_and_year_day_schedules(
    peer: MatterServerPeer, lock_and_events: tuple[MatterLock, Events]
) -> None:
    lock, _ = lock_and_events
    lock.set_user(5)
    weekdays = DaysMask.MONDAY | DaysMask.WEDNESDAY | DaysMask.FRIDAY
    lock.set_week_day_schedule(1, 5, weekdays, time(9, 0), time(12, 30))
    assert peer.week_days[(5, 1)]["daysMask"] == 0b0101010
    lock.set_year_day_schedule(1, 5, 1_800_000_000, 1_800_086_400)
    assert peer.year_days[(5, 1)]["localEndTime"] == 1_800_086_400
    lock.clear_week_day_schedule(1, 5)
    lock.clear_year_day_schedule(1, 5)
    assert peer.week_days == peer.year_days == {}
    with pytest.raises(LockError, match="0x8b"):  # NOT_FOUND from the lock
        lock.clear_week_day_schedule(1, 5)
    with pytest.raises(ValueError, match="start before"):
        lock.set_week_day_schedule(2, 5, weekdays, time(12, 0), time(9, 0))
    with pytest.raises(LockError, match="0x8b"):  # no such user
        lock.set_year_day_schedule(1, 6, 1_800_000_000, 1_800_086_400)


# --- configuration and closing --------------------------------------------------------------


def test_config_is_checked_and_never_shows_the_pin() -> None:
    with pytest.raises(ValueError, match="missing Matter lock settings: node_id"):
        MatterLockConfig.from_mapping({"url": "ws://127.0.0.1:5580/ws"})
    with pytest.raises(ValueError, match="unknown Matter lock settings: port"):
        MatterLockConfig.from_mapping({"url": "ws://h/ws", "node_id": 1, "port": 5580})
    with pytest.raises(ValueError, match="url"):
        MatterLockConfig(url="http://h:5580/ws", node_id=1)
    with pytest.raises(ValueError, match="node_id"):
        MatterLockConfig(url="ws://h/ws", node_id=True)
    config = MatterLockConfig.from_mapping({"url": "ws://h/ws", "node_id": 7, "pin": PIN})
    assert PIN not in repr(config)


def test_a_closed_driver_refuses_everything(lock_and_events: tuple[MatterLock, Events]) -> None:
    lock, _ = lock_and_events
    lock.close()
    assert not lock.status().online
    with pytest.raises(LockError, match="closed"):
        lock.unlock(REMOTE)
    with pytest.raises(LockError, match="closed"):
        lock.clear_pin(1)
    lock.close()  # twice is fine


# --- unlocks whose outcome never comes: a LockDoor follows (fail closed) ----------------

STARTS_LOCKED = pytest.mark.parametrize("peer", ["matter_door_lock_with_usr.json"], indirect=True)


@STARTS_LOCKED
def test_an_unlock_reported_after_its_timeout_is_relocked(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    # A slow lock: the bolt draws back only after the driver has given up on it. The
    # hub already reported the unlock as failed (the agent closes the entry on that),
    # so the late unlock must not leave the door unlocked with nobody watching it.
    lock, events = make_lock(operation_timeout=0.2)
    assert lock.status().lock_state == LockState.LOCKED
    peer.motor_seconds = 0.6

    lock.unlock(REMOTE)

    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
    seen: list[LockEvent] = []
    while LockOperation(LOCK, REMOTE) not in seen:  # the lock's word on the relock
        seen.append(events.next())
    assert LockOperation(UNLOCK, REMOTE) in seen  # the late unlock is reported as it is
    assert lock.status().lock_state == LockState.LOCKED
    assert [args["command_name"] for args in peer.commands] == ["UnlockDoor", "LockDoor"]


@STARTS_LOCKED
def test_an_unlock_cut_off_by_a_dropped_connection_is_relocked_on_reconnect(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    # The server took the UnlockDoor and the connection dropped before its answer: the
    # driver reports a failure, yet the bolt may well move. Once back, it must relock.
    lock, events = make_lock()
    assert peer.wait_for_listeners(1)
    peer.motor_seconds = 0.2
    peer.hold_answers = True
    lock.unlock(REMOTE)
    wait_until(lambda: peer.accepted == 1, WAIT, "the UnlockDoor reaching the lock")
    peer.refuse_connections = True
    peer.drop_connections()
    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
    _until(lock, lambda status: not status.online)
    # The motor finishes while nobody listens.
    wait_until(lambda: peer.attribute(LOCK_STATE) == 2, WAIT, "the bolt drawn back")
    peer.hold_answers = False
    peer.refuse_connections = False

    assert events.next() == LockOperation(UNLOCK, OperationSource.UNSPECIFIED)  # seen on re-read
    _until(lock, lambda status: status.online and status.lock_state == LockState.LOCKED)
    assert [args["command_name"] for args in peer.commands] == ["UnlockDoor", "LockDoor"]


@STARTS_LOCKED
def test_a_keypad_refusal_does_not_settle_a_remote_unlock(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    # While the hub's UnlockDoor is under way, someone types a wrong code at the keypad.
    # That refusal is not the remote unlock's outcome: if the lock then never reports,
    # the driver's own timeout must still report the remote unlock as failed.
    lock, events = make_lock(operation_timeout=0.3)
    peer.silent = True
    lock.unlock(REMOTE)
    wrong_code = {
        "lockOperationType": 1,
        "operationSource": 3,  # keypad
        "operationError": 1,  # invalid credential
        "userIndex": None,
        "fabricIndex": None,
        "sourceNode": None,
        "credentials": None,
    }
    with peer._mutex:
        peer._emit(3, wrong_code)

    assert events.next() == LockOperationError(
        UNLOCK, OperationSource.KEYPAD, OperationError.INVALID_CREDENTIAL
    )
    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
