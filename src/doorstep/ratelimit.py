"""A small sliding-window limiter for guesses (passwords, client secrets, claim codes).

In-process: with several `serve` processes each limits on its own, which still bounds a
guesser to (processes x limit) per window.

A key that is a client address (alone, or after one `purpose:` prefix) is counted per
network: an IPv6 address by its /64, the block one subscriber gets and may pick any
address from, so cycling through it buys no more tries; an IPv4 address seen on a
dual-stack socket (`::ffff:a.b.c.d`) as that IPv4 address.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import defaultdict, deque

IPV6_PREFIX = 64


def counted_as(key: str) -> str:
    """The key under which `key`'s attempts are counted."""
    prefix, address = "", key
    if _address(key) is None:
        head, sep, rest = key.partition(":")
        prefix, address = f"{head}{sep}", rest
    ip = _address(address)
    if ip is None:
        return key
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return f"{prefix}{ip}"
    network = ipaddress.IPv6Network((int(ip), IPV6_PREFIX), strict=False)
    return f"{prefix}{network}"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Limiter:
    def __init__(self, *, limit: int, window_seconds: float) -> None:
        self._limit = limit
        self._window = window_seconds
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._swept = float("-inf")

    def allow(self, key: str, now: float) -> bool:
        """Count one attempt for `key`; False once the window's limit is used up."""
        with self._lock:
            self._sweep(now)
            hits = self._hits[counted_as(key)]
            while hits and hits[0] <= now - self._window:
                hits.popleft()
            if len(hits) >= self._limit:
                return False
            hits.append(now)
            return True

    def _sweep(self, now: float) -> None:
        """Forget the clients whose attempts have all left the window, once a window
        (under the lock): otherwise every address ever seen stays in memory."""
        if now - self._swept < self._window:
            return
        self._swept = now
        stale = [
            key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self._window
        ]
        for key in stale:
            del self._hits[key]

    def __len__(self) -> int:
        """How many clients are held now."""
        with self._lock:
            return len(self._hits)
