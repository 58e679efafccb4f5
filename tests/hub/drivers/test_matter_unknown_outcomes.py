"""The Matter driver fails closed on an unlock whose outcome never comes in time, or is
cut off by a dropped connection (a LockDoor follows), and only a remote report answers it.

Against the same loopback stand-in Matter server as test_matter.py; every wait is bounded.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from doorstep.hub.drivers.matter import MatterLock
from doorstep.hub.lock import (
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
LOCK_STATE = "1/257/0"
WAIT = 5.0


class Events:
    def __init__(self) -> None:
        self._queue: queue.Queue[LockEvent] = queue.Queue()

    def __call__(self, event: LockEvent) -> None:
        self._queue.put(event)

    def next(self) -> LockEvent:
        try:
            return self._queue.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no lock event within {WAIT} s")


@pytest.fixture
def peer() -> Iterator[MatterServerPeer]:
    with running_peer(load_node("matter_door_lock_with_usr.json")) as peer:  # starts locked
        yield peer


@pytest.fixture
def make_lock(peer: MatterServerPeer) -> Iterator[Callable[..., tuple[MatterLock, Events]]]:
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


def _until(lock: MatterLock, predicate: Callable[[LockStatus], bool]) -> None:
    assert lock.wait_for_status(predicate, WAIT), f"status stayed {lock.status()}"


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
