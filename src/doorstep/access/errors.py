"""Errors of the access domain that callers tell apart by code."""

from __future__ import annotations

from doorstep.errors import Conflict, DoorstepError


class LockRefused(Conflict):
    """A remote lock that was not done: the hub is offline, someone's entry is in
    progress, the door is open, the lock jammed. `details.reason` is the `Reason` code."""

    code = "lock_refused"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason


class HubTimeout(DoorstepError):
    """The hub did not answer in time; what the door did is not known yet."""

    code = "hub_timeout"
    status = 504
