"""One exception tree with stable codes; one place maps them to HTTP.

Every error body is `{"error": {"code": ..., "message": ..., "details"?: ...}}`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DoorstepError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class InvalidRequest(DoorstepError):
    code = "invalid_request"
    status = 422


class NotAuthenticated(DoorstepError):
    code = "not_authenticated"
    status = 401


class Forbidden(DoorstepError):
    code = "forbidden"
    status = 403


class NotFound(DoorstepError):
    """Also what a caller sees for an object that exists but is not theirs."""

    code = "not_found"
    status = 404


class Conflict(DoorstepError):
    code = "conflict"
    status = 409


class TooManyRequests(DoorstepError):
    code = "rate_limited"
    status = 429


class PayloadTooLarge(DoorstepError):
    code = "payload_too_large"
    status = 413


class ServiceUnavailable(DoorstepError):
    code = "unavailable"
    status = 503


DATABASE_BUSY = "the database is busy; nothing was changed, try again"


class InternalError(DoorstepError):
    """What a client is told of an exception no handler took (`doorstep.app`): that it
    happened, and nothing of what it was; the server's log has the rest."""

    code = "internal_error"
    status = 500


UNEXPECTED = "the service failed to complete this request"
