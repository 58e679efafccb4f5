"""Time for the hub: real timers, or a clock that tests move by hand.

The simulated lock's motor and auto-relock and the agent's relock watch all schedule
through a `Scheduler`, so a test can pass one `ManualScheduler` to both and step through
an entry second by second without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        """Run `fn` after `delay` seconds; never before this call returns."""
        ...


class ThreadScheduler:
    """Real time: one daemon `threading.Timer` per call."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        timer = threading.Timer(delay, fn)
        timer.daemon = True
        timer.start()
        return timer


@dataclass(order=True)
class _ManualCall:
    due: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualScheduler:
    """A clock that moves only when `advance()` is called. Single-threaded, for tests."""

    def __init__(self) -> None:
        self.now = 0.0
        self._calls: list[_ManualCall] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        call = _ManualCall(self.now + delay, next(self._seq), fn)
        heapq.heappush(self._calls, call)
        return call

    def advance(self, seconds: float) -> None:
        """Move the clock on, running every call that falls due, in time order."""
        deadline = self.now + seconds
        while self._calls and self._calls[0].due <= deadline:
            call = heapq.heappop(self._calls)
            self.now = call.due
            if not call.cancelled:
                call.fn()
        self.now = deadline

    @property
    def pending(self) -> int:
        return sum(not call.cancelled for call in self._calls)
