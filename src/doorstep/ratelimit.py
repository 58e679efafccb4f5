"""A small sliding-window limiter for guesses (passwords, client secrets, claim codes).

In-process: with several `serve` processes each limits on its own, which still bounds a
guesser to (processes x limit) per window.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque


class Limiter:
    def __init__(self, *, limit: int, window_seconds: float) -> None:
        self._limit = limit
        self._window = window_seconds
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> bool:
        """Count one attempt for `key`; False once the window's limit is used up."""
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self._window:
                hits.popleft()
            if len(hits) >= self._limit:
                return False
            hits.append(now)
            return True
