"""The Matter driver owes a LockDoor whenever the bolt may have been left drawn.

An unlock whose answer is an SDK error (its InvokeResponse lost on the radio: the lock
may have acted) has no known outcome, as one cut off by a dropped connection has. And a
LockDoor cut off by a dropped connection (the hub's, or the one the driver owed) may not
have thrown the bolt: it is sent again once the lock is reachable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from doorstep.hub.drivers.matter import MatterLock
from doorstep.hub.lock import (
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)
from polling import wait_until

from .matter_peer import MatterServerPeer
from .matter_rig import MakeLock, lock_maker, locked_peer, sent, until
from .test_matter import WAIT, Events

REMOTE, AUTO = OperationSource.REMOTE, OperationSource.AUTO
UNLOCK, LOCK = LockOperationType.UNLOCK, LockOperationType.LOCK


@pytest.fixture
def peer() -> Iterator[MatterServerPeer]:
    """The stand-in server with a lock that starts locked, its door shut."""
    with locked_peer() as peer:
        yield peer


@pytest.fixture
def make_lock(peer: MatterServerPeer) -> Iterator[MakeLock]:
    with lock_maker(peer) as make:
        yield make


def test_an_unlock_whose_answer_is_lost_is_relocked(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    # The lock takes the UnlockDoor, but its answer is lost on the radio: the server
    # answers with an SDK error. The bolt draws back all the same.
    lock, events = make_lock()
    peer.lose_answers = True
    peer.motor_seconds = 0.2

    lock.unlock(REMOTE)

    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
    wait_until(lambda: peer.accepted == 2, WAIT, "a LockDoor after the unanswered unlock")
    assert sent(peer) == ["UnlockDoor", "LockDoor"]
    until(lock, lambda status: status.lock_state == LockState.LOCKED)
    assert peer.attribute("1/257/0") == int(LockState.LOCKED)


def test_an_owed_relock_cut_off_is_sent_again_on_reconnect(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    # An unlock reports nothing in time: the driver owes a LockDoor and sends it. The
    # connection drops before that LockDoor is answered: the bolt may still be drawn.
    lock, events = make_lock(operation_timeout=0.3)
    assert peer.wait_for_listeners(1)
    peer.silent = True
    peer.hold_answers = True
    lock.unlock(REMOTE)
    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
    wait_until(lambda: sent(peer) == ["UnlockDoor", "LockDoor"], WAIT, "the owed LockDoor")
    peer.refuse_connections = True
    peer.drop_connections()
    assert events.next() == LockOperationError(LOCK, AUTO, OperationError.UNSPECIFIED)
    until(lock, lambda status: not status.online)

    peer.set_attribute("1/257/0", int(LockState.UNLOCKED), announce=False)  # the late unlock
    peer.silent = peer.hold_answers = peer.refuse_connections = False

    wait_until(lambda: len(peer.commands) == 3, WAIT, "the LockDoor sent again")
    assert sent(peer) == ["UnlockDoor", "LockDoor", "LockDoor"]
    until(lock, lambda status: status.online and status.lock_state == LockState.LOCKED)


def test_the_hubs_lock_cut_off_is_sent_again_on_reconnect(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    lock, _ = make_lock()
    lock.unlock(REMOTE)
    until(lock, lambda status: status.lock_state == LockState.UNLOCKED)
    assert peer.wait_for_listeners(1)
    peer.hold_answers = True
    peer.silent = True
    lock.lock(AUTO)  # the hub's relock, after the door shut
    wait_until(lambda: peer.accepted == 2, WAIT, "the LockDoor reaching the lock")
    peer.refuse_connections = True
    peer.drop_connections()
    until(lock, lambda status: not status.online)
    peer.silent = peer.hold_answers = peer.refuse_connections = False

    wait_until(lambda: len(peer.commands) == 3, WAIT, "the LockDoor sent again")
    assert sent(peer) == ["UnlockDoor", "LockDoor", "LockDoor"]
    until(lock, lambda status: status.online and status.lock_state == LockState.LOCKED)
