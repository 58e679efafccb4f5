"""A Matter driver on the stand-in server, for the tests of how it fails closed: a lock
with users that starts locked, its door shut, and drivers that reconnect quickly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from doorstep.hub.drivers.matter import MatterLock
from doorstep.hub.lock import LockStatus

from .matter_peer import MatterServerPeer, load_node, running_peer
from .test_matter import WAIT, Events

MakeLock = Callable[..., tuple[MatterLock, Events]]


@contextmanager
def locked_peer() -> Iterator[MatterServerPeer]:
    with running_peer(load_node("matter_door_lock_with_usr.json")) as peer:
        yield peer


@contextmanager
def lock_maker(peer: MatterServerPeer) -> Iterator[MakeLock]:
    """`make(**settings)`: a driver connected to `peer` (settings override the defaults),
    online, with its events collected; every one made is closed at the end."""
    locks: list[MatterLock] = []

    def make(**settings: Any) -> tuple[MatterLock, Events]:
        config = {
            "url": peer.url,
            "node_id": peer.node_id,
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

    try:
        yield make
    finally:
        for lock in locks:
            lock.close()


def sent(peer: MatterServerPeer) -> list[str]:
    """The commands the lock has received, by name, in order."""
    return [args["command_name"] for args in peer.commands]


def until(lock: MatterLock, predicate: Callable[[LockStatus], bool]) -> None:
    assert lock.wait_for_status(predicate, WAIT), f"status stayed {lock.status()}"
