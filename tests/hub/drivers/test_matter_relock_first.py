"""The Matter driver sends the LockDoor it owes before any UnlockDoor.

A relock is owed when the bolt may have been left drawn (an unlock cut off by a dropped
connection, for one). As the lock comes back, the driver pays it; an unlock asked for in
that window, or while the owed LockDoor is still moving, is refused (LockError, which
the hub reports as `lock_not_ready`) rather than sent ahead of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from doorstep.hub.drivers.matter import MatterLock
from doorstep.hub.lock import (
    LockError,
    LockOperation,
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

REMOTE = OperationSource.REMOTE
UNLOCK, LOCK = LockOperationType.UNLOCK, LockOperationType.LOCK
BOLT_THROWN = 0  # the peer's LockOperationType for LockDoor


@pytest.fixture
def peer() -> Iterator[MatterServerPeer]:
    """The stand-in server with a lock that starts locked, its door shut."""
    with locked_peer() as peer:
        yield peer


@pytest.fixture
def make_lock(peer: MatterServerPeer) -> Iterator[MakeLock]:
    with lock_maker(peer) as make:
        yield make


def test_an_unlock_as_the_lock_comes_back_waits_for_the_owed_relock(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    # The UnlockDoor reaches the lock, and the connection drops before its answer: the
    # bolt may be drawn, so a LockDoor is owed until the lock is reachable again.
    lock, events = make_lock()
    assert peer.wait_for_listeners(1)
    peer.silent = peer.hold_answers = True
    lock.unlock(REMOTE)
    wait_until(lambda: peer.accepted == 1, WAIT, "the UnlockDoor reaching the lock")
    peer.refuse_connections = True
    peer.drop_connections()
    assert events.next() == LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
    until(lock, lambda status: not status.online)
    peer.hold_answers = peer.refuse_connections = False  # back; the motor stays quiet

    until(lock, lambda status: status.online)
    with pytest.raises(LockError, match="relock"):
        lock.unlock(REMOTE)  # as the lock comes back: the owed LockDoor goes first
    wait_until(lambda: len(peer.commands) == 2, WAIT, "the owed LockDoor")
    with pytest.raises(LockError, match="relock"):
        lock.unlock(REMOTE)  # nor while that LockDoor is moving the bolt
    assert sent(peer) == ["UnlockDoor", "LockDoor"]

    peer.silent = False
    peer.finish_move(BOLT_THROWN)
    assert events.next() == LockOperation(LOCK, REMOTE)
    until(lock, lambda status: status.lock_state == LockState.LOCKED)
    lock.unlock(REMOTE)  # the relock paid: unlocking is the hub's to ask again
    assert events.next() == LockOperation(UNLOCK, REMOTE)
    assert sent(peer) == ["UnlockDoor", "LockDoor", "UnlockDoor"]
