"""The Matter driver remembers, in the hub's journal, the highest event number a node sent.

A resubscription replays the lock's buffered events with their old numbers
(`test_matter_review_replayed_events.py`). A driver that has just started has seen no
number yet, so without a memory a replay that came before the first live event would be
taken as news. The journal keeps the number across hub restarts, per commissioning of
the node: a lock commissioned again numbers its events from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub.drivers.matter import MatterLock
from doorstep.hub.journal import Journal
from doorstep.hub.lock import (
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
UNSPECIFIED = OperationError.UNSPECIFIED

StartLock = Callable[..., tuple[MatterLock, Events]]


@pytest.fixture
def peer() -> Iterator[MatterServerPeer]:
    """The stand-in server with a lock that starts locked, its door shut."""
    with running_peer(load_node("matter_door_lock_with_usr.json")) as peer:
        yield peer


@pytest.fixture
def open_journal(tmp_path: Path) -> Iterator[Callable[[], Journal]]:
    """Open the hub's journal again, as each start of the hub does."""
    key = Ed25519PrivateKey.generate()
    opened: list[Journal] = []

    def reopen() -> Journal:
        if opened:
            opened[-1].close()
        opened.append(Journal(tmp_path / "journal.db", hub_id="hub-1", signing_key=key))
        return opened[-1]

    yield reopen
    if opened:
        opened[-1].close()


@pytest.fixture
def start_lock(peer: MatterServerPeer) -> Iterator[StartLock]:
    """Start a driver on `journal`, as the hub does, and wait until it is online."""
    locks: list[MatterLock] = []

    def start(journal: Journal, **settings: Any) -> tuple[MatterLock, Events]:
        config = {
            "url": peer.url,
            "node_id": peer.node_id,
            "open_timeout": WAIT,
            "reconnect_initial": 0.02,
            "reconnect_max": 0.1,
            **settings,
        }
        lock = MatterLock.from_config(config, event_marks=journal)
        locks.append(lock)
        events = Events()
        lock.subscribe(events)
        assert lock.wait_for_status(lambda status: status.online, WAIT), "never came online"
        return lock, events

    yield start
    for lock in locks:
        lock.close()


def _lock_then_unlock(lock: MatterLock, events: Events) -> None:
    """The lock's events 1 and 2: locked, then unlocked for an entry."""
    lock.lock(REMOTE)
    assert events.next() == LockOperation(LOCK, REMOTE)
    lock.unlock(REMOTE)
    assert events.next() == LockOperation(UNLOCK, REMOTE)


def test_after_a_restart_a_replayed_lock_operation_does_not_answer_the_relock(
    peer: MatterServerPeer, open_journal: Callable[[], Journal], start_lock: StartLock
) -> None:
    lock, events = start_lock(open_journal())
    _lock_then_unlock(lock, events)
    lock.close()

    # The hub restarts and relocks; the lock reports nothing. The SDK resubscribes
    # meanwhile, before the lock sends anything live: the earlier "locked" comes again.
    lock, events = start_lock(open_journal(), operation_timeout=1.0)
    peer.silent = True
    lock.lock(AUTO)
    peer.replay_events()
    peer.open_door()  # live: everything before it has been read

    assert events.next() == DoorStateChange(DoorState.OPEN)  # the replay reported nothing
    assert lock.status().lock_state == LockState.UNLOCKED  # nor moved the bolt back
    assert events.next() == LockOperationError(LOCK, AUTO, UNSPECIFIED)
    assert not lock.status().secure

    peer.silent = False
    lock.lock(REMOTE)  # a live event, numbered after the replayed ones, is news

    assert events.next() == LockOperation(LOCK, REMOTE)
    assert lock.status().lock_state == LockState.LOCKED


def test_a_lock_commissioned_again_is_not_held_to_its_old_numbers(
    peer: MatterServerPeer, open_journal: Callable[[], Journal], start_lock: StartLock
) -> None:
    lock, events = start_lock(open_journal(), operation_timeout=1.0)
    _lock_then_unlock(lock, events)

    # The lock is reset and commissioned again under the same node id, while the hub
    # runs: it numbers its events from 1 again.
    peer.recommission("2026-11-20T08:00:00.000000")
    peer.drop_connections()
    assert peer.wait_for_listeners(2)
    assert lock.wait_for_status(lambda status: status.online, WAIT), "never came back"

    lock.lock(REMOTE)  # its event 1 since it was commissioned again
    assert events.next() == LockOperation(LOCK, REMOTE)
    lock.close()

    # And after a restart, the hub holds it to the numbers of this commissioning only.
    lock, events = start_lock(open_journal(), operation_timeout=1.0)
    lock.unlock(REMOTE)  # its event 2
    assert events.next() == LockOperation(UNLOCK, REMOTE)


def test_a_lock_that_numbers_its_events_anew_fails_closed_and_the_log_says_why(
    peer: MatterServerPeer,
    open_journal: Callable[[], Journal],
    start_lock: StartLock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lock, events = start_lock(open_journal())
    _lock_then_unlock(lock, events)
    lock.lock(REMOTE)
    assert events.next() == LockOperation(LOCK, REMOTE)
    lock.close()
    peer.lose_event_count()  # against the spec, and with no new commissioning

    lock, events = start_lock(open_journal(), operation_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="doorstep.hub.drivers.matter"):
        lock.unlock(REMOTE)  # the lock unlocks: its event 1, not after 3, is dropped

        # No outcome the hub can trust: the unlock failed, and the relock owed goes out.
        assert events.next() == LockOperationError(UNLOCK, REMOTE, UNSPECIFIED)
        assert events.next() == LockOperationError(LOCK, AUTO, UNSPECIFIED)

    names = [command["command_name"] for command in peer.commands]
    assert names[-2:] == ["UnlockDoor", "LockDoor"]
    assert peer.attribute("1/257/0") == int(LockState.LOCKED)
    assert "dropped as replays" in caplog.text
