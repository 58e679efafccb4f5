"""The Matter driver and a resubscription's replay of the lock's old events.

python-matter-server subscribes to a node with no event-number filter, so when the SDK
resubscribes (a radio blip) the lock's buffered events come again as live `node_event`s,
with their old numbers. The peer's `replay_events()` does the same. History is not news:
a replayed LockOperation must not answer a request the lock never carried out, nor a
replayed LockJammed raise a jam long freed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from doorstep.hub.drivers.matter import MatterLock
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    DoorState,
    DoorStateChange,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)

from .matter_peer import MatterServerPeer, load_node, running_peer
from .test_matter import WAIT, Events

REMOTE, AUTO = OperationSource.REMOTE, OperationSource.AUTO
UNLOCK, LOCK = LockOperationType.UNLOCK, LockOperationType.LOCK


@pytest.fixture
def peer() -> Iterator[MatterServerPeer]:
    """The stand-in server with a lock that starts locked, its door shut."""
    with running_peer(load_node("matter_door_lock_with_usr.json")) as peer:
        yield peer


@pytest.fixture
def make_lock(peer: MatterServerPeer) -> Iterator[Callable[..., tuple[MatterLock, Events]]]:
    locks: list[MatterLock] = []

    def make(**settings: Any) -> tuple[MatterLock, Events]:
        lock = MatterLock.from_config(
            {"url": peer.url, "node_id": peer.node_id, "open_timeout": WAIT, **settings}
        )
        locks.append(lock)
        events = Events()
        lock.subscribe(events)
        assert lock.wait_for_status(lambda status: status.online, WAIT), "never came online"
        return lock, events

    yield make
    for lock in locks:
        lock.close()


def test_a_replayed_lock_operation_does_not_answer_a_relock_in_motion(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    # Earlier: locked, then unlocked for an entry. Now the hub relocks, and the lock
    # reports nothing. The SDK resubscribes meanwhile: the earlier "locked" comes again.
    lock, events = make_lock(operation_timeout=1.0)
    lock.lock(REMOTE)
    assert events.next() == LockOperation(LOCK, REMOTE)
    lock.unlock(REMOTE)
    assert events.next() == LockOperation(UNLOCK, REMOTE)
    peer.silent = True
    lock.lock(AUTO)

    peer.replay_events()
    peer.open_door()  # a live event after the replay: everything before it has been read

    assert events.next() == DoorStateChange(DoorState.OPEN)  # the replay reported nothing
    assert lock.status().lock_state == LockState.UNLOCKED  # nor moved the bolt back
    assert events.next() == LockOperationError(LOCK, AUTO, OperationError.UNSPECIFIED)
    assert not lock.status().secure


def test_a_replayed_jam_is_not_a_new_jam(
    peer: MatterServerPeer, make_lock: Callable[..., tuple[MatterLock, Events]]
) -> None:
    lock, events = make_lock()
    peer.motor_jammed = True
    lock.unlock(REMOTE)
    assert events.take(2) == [
        DoorLockAlarm(AlarmCode.LOCK_JAMMED),
        LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED),
    ]
    peer.motor_jammed = False
    lock.lock(REMOTE)
    assert events.next() == LockOperation(LOCK, REMOTE)  # freed
    assert not lock.status().jammed

    peer.replay_events()
    peer.open_door()

    assert events.next() == DoorStateChange(DoorState.OPEN)  # no alarm, no stale error
    assert not lock.status().jammed
    lock.unlock(REMOTE)
    assert events.next() == LockOperation(UNLOCK, REMOTE)  # live events still count
