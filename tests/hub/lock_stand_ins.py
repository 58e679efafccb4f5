"""Stand-ins for what fails between a hub and its lock, in front of a `SimulatedLock`,
passed to the hub as a real driver would be."""

from __future__ import annotations

from collections.abc import Callable

from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.lock import LockError, LockEvent, LockStatus, OperationSource


class RadioJustFailed:
    """The simulated lock behind a radio that has just failed: its status still reads
    online (the driver has not noticed yet), but no request gets through (LockError)."""

    def __init__(self, lock: SimulatedLock) -> None:
        self._lock = lock

    def status(self) -> LockStatus:
        return self._lock.status()

    def unlock(self, source: OperationSource) -> None:
        raise LockError("the request could not be sent")

    def lock(self, source: OperationSource) -> None:
        raise LockError("the request could not be sent")

    def subscribe(self, callback: Callable[[LockEvent], None]) -> None:
        self._lock.subscribe(callback)

    def close(self) -> None:
        self._lock.close()
