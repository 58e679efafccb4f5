"""Only the hub's own controller answers the Matter driver's LockDoor and UnlockDoor.

A lock has other controllers: other fabrics (Apple Home, Google Home, a second Home
Assistant) and other nodes on the server's fabric. Their LockDoor and UnlockDoor move the
bolt with source Remote too; the lock names who asked in each LockOperation and
LockOperationError (FabricIndex, SourceNode). The hub's is the server's fabric as the
lock numbers it (the node's CurrentFabricIndex, 0/62/5) and its controller's node id
(`controller_node_id`). Another controller's operation is reported as a movement of its
own, marked `other_controller` (so the hub agent does not take it for its own either),
never as the outcome of the hub's request. An event that names no controller (a lock
that leaves both unset) answers as before: nothing tells it from the hub's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from doorstep.hub.drivers.matter import MatterLock, MatterLockConfig
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

from .matter_peer import CONTROLLER_NODE, CURRENT_FABRIC_INDEX, MatterServerPeer
from .matter_rig import MakeLock, lock_maker, locked_peer, sent, until
from .test_matter import REQUIRE_PIN, WAIT, Events

REMOTE, AUTO = OperationSource.REMOTE, OperationSource.AUTO
UNLOCK, LOCK = LockOperationType.UNLOCK, LockOperationType.LOCK
UNLOCKED_REMOTELY = LockOperation(UNLOCK, REMOTE)
LOCKED_REMOTELY = LockOperation(LOCK, REMOTE)
UNLOCK_FAILED = LockOperationError(UNLOCK, REMOTE, OperationError.UNSPECIFIED)
OTHERS_UNLOCK = LockOperation(UNLOCK, REMOTE, other_controller=True)
OTHERS_LOCK = LockOperation(LOCK, REMOTE, other_controller=True)
BOLT_THROWN, BOLT_DRAWN = 0, 1  # the peer's LockOperationType for LockDoor, UnlockDoor
OTHER_NODE = 0x0000_0001_C0FF_EE00  # another controller's node id

# (fabric index, node id) of another controller than the server's (fabric 1, 112233).
OTHERS = {
    "another fabric, the same node id": (2, CONTROLLER_NODE),
    "another node on the server's fabric": (1, OTHER_NODE),
}


@pytest.fixture
def peer() -> Iterator[MatterServerPeer]:
    """The stand-in server with a lock that starts locked, its door shut."""
    with locked_peer() as peer:
        yield peer


@pytest.fixture
def make_lock(peer: MatterServerPeer) -> Iterator[MakeLock]:
    with lock_maker(peer) as make:
        yield make


def _relock_in_flight(peer: MatterServerPeer, make_lock: MakeLock) -> tuple[MatterLock, Events]:
    """A driver whose UnlockDoor was cut off by a dropped connection, and which has sent
    the LockDoor it owes for it; the lock reports nothing until the test moves the bolt."""
    lock, events = make_lock()
    assert peer.wait_for_listeners(1)
    peer.silent = peer.hold_answers = True
    lock.unlock(REMOTE)
    wait_until(lambda: peer.accepted == 1, WAIT, "the UnlockDoor reaching the lock")
    peer.refuse_connections = True
    peer.drop_connections()
    assert events.next() == UNLOCK_FAILED
    until(lock, lambda status: not status.online)
    peer.hold_answers = peer.refuse_connections = False
    wait_until(lambda: sent(peer) == ["UnlockDoor", "LockDoor"], WAIT, "the owed LockDoor")
    with pytest.raises(LockError, match="relock"):
        lock.unlock(REMOTE)  # the relock is awaiting its outcome
    return lock, events


# --- UnlockDoor ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fabric_index", "node"), OTHERS.values(), ids=OTHERS.keys())
def test_another_controllers_unlock_is_not_the_hubs(
    peer: MatterServerPeer, make_lock: MakeLock, fabric_index: int, node: int
) -> None:
    # The hub's UnlockDoor reaches a lock that then reports nothing of it; meanwhile
    # another controller unlocks the door. That is a movement of its own: the hub's
    # unlock still has no outcome, so it is reported failed and the bolt relocked.
    lock, events = make_lock(operation_timeout=0.3)
    peer.silent = True
    lock.unlock(REMOTE)
    peer.operate_for(BOLT_DRAWN, fabric_index=fabric_index, source_node=node)

    assert events.next() == OTHERS_UNLOCK  # the other controller's, as itself
    assert events.next() == UNLOCK_FAILED
    wait_until(lambda: sent(peer) == ["UnlockDoor", "LockDoor"], WAIT, "the relock")
    peer.finish_move(BOLT_THROWN)
    until(lock, lambda status: status.lock_state == LockState.LOCKED)


@pytest.mark.parametrize(("fabric_index", "node"), OTHERS.values(), ids=OTHERS.keys())
def test_another_controllers_refusal_is_not_the_hubs(
    peer: MatterServerPeer, make_lock: MakeLock, fabric_index: int, node: int
) -> None:
    # Another controller's UnlockDoor is refused (a wrong PIN) while the hub's is under
    # way: that says nothing of the hub's, whose bolt may still move.
    lock, events = make_lock(operation_timeout=0.3)
    peer.silent = True
    lock.unlock(REMOTE)
    peer.refuse_for(BOLT_DRAWN, fabric_index=fabric_index, source_node=node)

    refused = LockOperationError(
        UNLOCK, REMOTE, OperationError.INVALID_CREDENTIAL, other_controller=True
    )
    assert events.next() == refused
    assert events.next() == UNLOCK_FAILED
    wait_until(lambda: sent(peer) == ["UnlockDoor", "LockDoor"], WAIT, "the relock")


def test_another_controllers_refusal_after_the_hubs_own_is_reported(
    peer: MatterServerPeer, make_lock: MakeLock
) -> None:
    # The lock wants a PIN for remote operation and refuses the hub's wrong one with
    # FAILURE alone (no LockOperationError of its own). Another controller's refusal
    # after it is news, not the lock's word on the hub's refusal.
    peer.set_attribute(REQUIRE_PIN, True, announce=False)
    peer.refusal_events = False
    lock, events = make_lock(pin="99999999")
    lock.unlock(REMOTE)
    assert events.next() == UNLOCK_FAILED

    peer.refuse_for(BOLT_DRAWN, fabric_index=2, source_node=CONTROLLER_NODE)
    assert events.next() == LockOperationError(
        UNLOCK, REMOTE, OperationError.INVALID_CREDENTIAL, other_controller=True
    )


def test_an_unlock_naming_no_controller_is_taken_as_the_hubs(
    peer: MatterServerPeer, make_lock: MakeLock
) -> None:
    # A lock that leaves FabricIndex and SourceNode unset cannot be told from the hub's
    # own answer: it answers as before, and nothing is relocked behind the courier.
    peer.names_controller = False
    lock, events = make_lock(operation_timeout=0.3)
    lock.unlock(REMOTE)
    assert events.next() == UNLOCKED_REMOTELY
    assert events.empty_for(0.6)  # past the operation timeout: no failure, no relock
    assert sent(peer) == ["UnlockDoor"]


# --- LockDoor ------------------------------------------------------------------------------

HUBS = {
    # (the lock's index of the server's fabric, the server's controller node id)
    "the hub as the lock's second admin": (2, CONTROLLER_NODE),
    "a server controller with another node id": (1, OTHER_NODE),
}


@pytest.mark.parametrize(("fabric_index", "controller"), HUBS.values(), ids=HUBS.keys())
def test_a_relock_is_answered_by_the_hubs_lock_operation_alone(
    peer: MatterServerPeer, make_lock: MakeLock, fabric_index: int, controller: int
) -> None:
    peer.set_attribute(CURRENT_FABRIC_INDEX, fabric_index, announce=False)
    peer.controller_node = controller
    settings = {} if controller == CONTROLLER_NODE else {"controller_node_id": controller}
    lock, events = _relock_in_flight(peer, lambda: make_lock(**settings))

    # Another controller (fabric 1, node 112233: what the hub is not, here) locks the
    # door: the hub's relock is still awaiting its own outcome.
    peer.operate_for(BOLT_THROWN, fabric_index=1, source_node=CONTROLLER_NODE)
    assert events.next() == OTHERS_LOCK
    with pytest.raises(LockError, match="relock"):
        lock.unlock(REMOTE)

    peer.finish_move(BOLT_THROWN)  # the hub's LockDoor
    assert events.next() == LOCKED_REMOTELY
    peer.silent = False
    lock.unlock(REMOTE)
    assert events.next() == UNLOCKED_REMOTELY
    assert sent(peer) == ["UnlockDoor", "LockDoor", "UnlockDoor"]


def test_a_lock_operation_naming_no_controller_answers_a_relock(
    peer: MatterServerPeer, make_lock: MakeLock
) -> None:
    # The bolt thrown is what a relock asks for, whoever threw it: a lock that names no
    # controller still has its relocks answered.
    peer.names_controller = False
    lock, events = _relock_in_flight(peer, make_lock)
    peer.finish_move(BOLT_THROWN)
    assert events.next() == LOCKED_REMOTELY
    lock.unlock(REMOTE)


def test_one_bolt_thrown_answers_the_hubs_lock_and_the_owed_relock(
    peer: MatterServerPeer, make_lock: MakeLock
) -> None:
    # The hub's LockDoor is accepted and awaits its outcome; an UnlockDoor is then cut off
    # by a dropped connection, so the driver owes a LockDoor and sends it as the lock comes
    # back. The lock throws the bolt once and reports one LockOperation: both LockDoors
    # asked for just that, so an unlock may go out again at once.
    lock, events = make_lock()
    assert peer.wait_for_listeners(1)
    peer.silent = True
    lock.lock(AUTO)
    lock.refresh()  # answered after the LockDoor: its answer is in
    peer.hold_answers = True
    lock.unlock(REMOTE)
    wait_until(lambda: peer.accepted == 2, WAIT, "the UnlockDoor reaching the lock")
    peer.refuse_connections = True
    peer.drop_connections()
    assert events.next() == UNLOCK_FAILED
    until(lock, lambda status: not status.online)
    peer.hold_answers = peer.refuse_connections = False
    wait_until(lambda: len(peer.commands) == 3, WAIT, "the owed LockDoor")
    assert sent(peer) == ["LockDoor", "UnlockDoor", "LockDoor"]

    peer.finish_move(BOLT_THROWN)
    assert events.next() == LOCKED_REMOTELY
    peer.silent = False
    lock.unlock(REMOTE)
    assert events.next() == UNLOCKED_REMOTELY


# --- the setting -----------------------------------------------------------------------------


def test_the_controller_node_id_setting() -> None:
    base = {"url": "ws://127.0.0.1:5580/ws", "node_id": 7}
    assert MatterLockConfig.from_mapping(base).controller_node_id == CONTROLLER_NODE
    assert MatterLockConfig.from_mapping({**base, "controller_node_id": 5}).controller_node_id == 5
    # Not an operational node id: zero, beyond 0xFFFF_FFEF_FFFF_FFFF, or not an integer.
    for bad in (0, -1, 0xFFFF_FFF0_0000_0000, True, "112233", 1.0):
        with pytest.raises(ValueError, match="controller_node_id must be"):
            MatterLockConfig.from_mapping({**base, "controller_node_id": bad})
