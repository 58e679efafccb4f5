"""Fan-out of committed audit records to the live streams of their home, within this process.

`doorstep.live` takes a record only as a wake-up and reads the audit log itself (which
also holds what other service processes committed); `doorstep.web.live` sends the
record's action. No dependencies on the rest of the service, so the audit module can
publish through it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

QUEUE_LIMIT = 1000


class Bus:
    """Fan-out of committed audit records to the streams of their home (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]]] = {}
        self._forward: Callable[[str, dict[str, Any]], None] | None = None

    def forward(self, to: Callable[[str, dict[str, Any]], None]) -> None:
        """In a process without streams of its own (the child of `doorstep.hotwriter`): hand each
        published record to `to`, which passes it to the process that has them."""
        self._forward = to

    def subscribe(self, home_id: str) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_LIMIT)
        with self._lock:
            self._subscribers.setdefault(home_id, set()).add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, home_id: str, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        with self._lock:
            subscribers = self._subscribers.get(home_id, set())
            subscribers -= {entry for entry in subscribers if entry[1] is queue}
            if not subscribers:
                self._subscribers.pop(home_id, None)

    def publish(self, home_id: str, record: dict[str, Any]) -> None:
        if self._forward is not None:
            self._forward(home_id, record)
            return
        with self._lock:
            subscribers = list(self._subscribers.get(home_id, ()))
        for loop, queue in subscribers:
            loop.call_soon_threadsafe(_offer, queue, record)


def _offer(queue: asyncio.Queue[dict[str, Any] | None], record: dict[str, Any]) -> None:
    try:
        queue.put_nowait(record)
    except asyncio.QueueFull:  # a reader this far behind reconnects and replays instead
        queue.get_nowait()
        queue.put_nowait(None)


BUS = Bus()


def record_of(
    seq: int, ts: datetime, actor: str, action: str, subject: str, data: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": ts.isoformat(),
        "actor": actor,
        "action": action,
        "subject": subject,
        "data": data or {},
    }
