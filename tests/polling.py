"""Waiting, in tests, for state that another process or thread owns (an outbox row, a hub
journal, ffmpeg's liveness) and that has no event stream to wait on: read it again and
again, each loop bounded in time, and fail with what was last seen.

`tests/` is on pytest's `pythonpath`, so any test imports this as `polling`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    read: Callable[[], T], done: Callable[[T], bool], timeout: float, every: float = 0.05
) -> T:
    """`read()` until `done` holds of the reading or `timeout` s have passed; returns the
    last reading, for the caller to assert on (so a failure shows what was there)."""
    deadline = time.monotonic() + timeout
    while not done(value := read()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


def wait_until(condition: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail after
    `timeout` s, naming `what` was awaited."""
    value = poll(condition, bool, timeout, every)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value
