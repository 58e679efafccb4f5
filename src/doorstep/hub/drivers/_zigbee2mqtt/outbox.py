"""Deliver a driver's notices in the order they happened, outside the driver's mutex.

The driver `put`s notices while it holds its own mutex (so their order is the order of
its state changes) and calls `deliver()` after releasing it. Whichever thread is not
already delivering delivers; a notice queued meanwhile by another thread, or by a
subscriber calling back into the driver, goes out right after the current one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from doorstep.hub.drivers._zigbee2mqtt.payloads import PinSlotChange
from doorstep.hub.lock import LockEvent

log = logging.getLogger("doorstep.hub.drivers.zigbee2mqtt")


Notice = LockEvent | PinSlotChange


class Outbox:
    """A queue of notices and the subscribers that hear them."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._queue: deque[Notice] = deque()
        self._delivering = False
        self._event_subscribers: list[Callable[[LockEvent], None]] = []
        self._pin_subscribers: list[Callable[[PinSlotChange], None]] = []

    def subscribe(self, callback: Callable[[LockEvent], None]) -> None:
        with self._mutex:
            self._event_subscribers.append(callback)

    def subscribe_pin_slots(self, callback: Callable[[PinSlotChange], None]) -> None:
        with self._mutex:
            self._pin_subscribers.append(callback)

    def put(self, notice: Notice) -> None:
        with self._mutex:
            self._queue.append(notice)

    def clear(self) -> None:
        """Drop queued notices and subscribers (the driver is closing)."""
        with self._mutex:
            self._queue.clear()
            self._event_subscribers.clear()
            self._pin_subscribers.clear()

    def deliver(self) -> None:
        """Hand every queued notice to its subscribers, unless another thread already is."""
        with self._mutex:
            if self._delivering:
                return  # the delivering thread will pick up our notices, in order
            self._delivering = True
        try:
            while (notice := self._next()) is not None:
                for callback in self._callbacks_for(notice):
                    _notify(callback, notice)
        except BaseException:
            with self._mutex:
                self._delivering = False
            raise

    def _next(self) -> Notice | None:
        # Popping and giving up the delivering role happen under one lock hold, so a
        # notice queued by another thread meanwhile is never stranded.
        with self._mutex:
            if self._queue:
                return self._queue.popleft()
            self._delivering = False
            return None

    def _callbacks_for(self, notice: Notice) -> tuple[Callable[[Any], None], ...]:
        with self._mutex:
            if isinstance(notice, PinSlotChange):
                return tuple(self._pin_subscribers)
            return tuple(self._event_subscribers)


def _notify(callback: Callable[[Any], None], notice: Notice) -> None:
    # One faulty subscriber must not stop the others from hearing about the lock.
    try:
        callback(notice)
    except Exception:
        log.exception("lock event subscriber failed on %r", notice)
