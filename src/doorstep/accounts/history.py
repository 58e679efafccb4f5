"""A resident's own account history (security log): the audit records whose subject is
their account, newest first, each in plain words with only what answers "was that me?":
the way in (`via`), the client address, and why an attempt was refused.

    GET /v1/me/history?before=<seq>&limit=<1..100, default 50>

Items come newest first; the last item's `seq` is the `before` of the next page, and a
`Link: <...>; rel="next"` header names that page while there is one. Only records whose
subject is the caller's account are read, so another account's never show, nor failed
attempts for an email that is no account (kept under `unknown`). The records this reads
hold no password, code, key or token (`accounts.signins`, `accounts.passwords`,
`accounts.twofactor`); even so, their data is passed on field by field, never whole. The
web page `/account/history` (`doorstep.web.history`) shows the same pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.audit.models import AuditEvent
from doorstep.deps import Resident, SessionDep
from doorstep.errors import InvalidRequest
from doorstep.schemas import Output

PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
_MAX_FIELD = 100  # longer text in a record's data is not shown (none is expected)

# What each record says, in plain words; a refused attempt's reason refines it below.
SUMMARIES = {
    "account:resident:created": "Account created",
    "account:signin": "Signed in",
    "account:signin_failed": "Sign-in refused",
    "account:reauth": "Password entered again to confirm it was you",
    "account:reauth_failed": "Password check refused",
    "account:password:changed": "Password changed",
    "account:password_reset:requested": "Password reset link emailed",
    "account:password_reset:not_sent": "Password reset asked for; no link sent",
    "account:password_reset:failed": "Password reset link refused",
    "account:totp_setup:started": "Two-step sign-in set-up started",
    "account:totp_setup:failed": "Two-step sign-in set-up refused",
    "account:totp:on": "Two-step sign-in turned on",
    "account:totp:off": "Two-step sign-in turned off",
    "account:totp:locked": "Codes refused for a few minutes after too many wrong ones",
    "account:recovery_code:used": "Recovery code used",
    "account:sessions:revoked": "Signed out everywhere",
    "account:session:revoked": "A session was ended",
    "account:notifications:set": "Email notifications changed",
    "account:passkey:added": "Passkey added",
    "account:passkey:removed": "Passkey removed",
}
_REASONS = {
    "wrong_credentials": "wrong password",
    "wrong_code": "wrong code",
    "code_locked": "too many wrong codes",
    "paused": "paused after too many wrong passwords",
    "not_a_resident": "this account does not use that app",
    "not_a_courier": "this account does not use that app",
    "not_a_visitor": "this account does not use that app",
    "bad_link": "the link was unknown or already used",
    "expired": "the link had expired",
    "inactive": "the account is not active",
    "too_many": "too many links asked for this hour",
    "passkey_refused": "the passkey could not be verified",
    "passkey_counter": "the passkey's count went back (a copy of it?)",
}
_REFUSED = frozenset(
    {
        "account:signin_failed",
        "account:reauth_failed",
        "account:password_reset:not_sent",
        "account:password_reset:failed",
        "account:totp_setup:failed",
        "account:totp:locked",
    }
)
WAYS = {
    "web": "Web app",
    "web_code": "Web app, code step",
    "courier_web": "Courier app",
    "visitor_web": "Guest and provider app",
    "api": "API",
    "remote_unlock": "Remote unlock",
    "revoke_everything": "Revoke everything",
    "password_change": "Password change page",
    "api_password_change": "API password change",
    "api_two_factor": "API two-step settings",
    "password_reset": "Emailed reset link",
    "passkey": "Passkey",
}


@dataclass(frozen=True, slots=True)
class HistoryItem:
    seq: int
    at: datetime
    action: str
    summary: str
    refused: bool
    via: str | None
    client: str | None
    reason: str | None

    @property
    def way(self) -> str | None:
        """The way in, in plain words."""
        return WAYS.get(self.via, self.via) if self.via else None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[HistoryItem]
    older: int | None  # the `before` of the next (older) page; None on the last


def history(
    session: Session, *, user_id: str, before: int | None = None, limit: int = PAGE_SIZE
) -> HistoryPage:
    """One page of the account's records, newest first, older than `before`."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE_SIZE}")
    query = select(AuditEvent).where(AuditEvent.subject == user_id)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    rows = session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit + 1)).all()
    items = [item_of(row) for row in rows[:limit]]
    return HistoryPage(items, items[-1].seq if len(rows) > limit else None)


def item_of(event: AuditEvent) -> HistoryItem:
    data = event.data if isinstance(event.data, dict) else {}
    reason = _text(data, "reason")
    return HistoryItem(
        seq=event.seq,
        at=event.ts,
        action=event.action,
        summary=summary(event.action, data),
        refused=event.action in _REFUSED,
        via=_text(data, "via"),
        client=_text(data, "client"),
        reason=reason,
    )


def summary(action: str, data: dict[str, Any]) -> str:
    """The record in plain words: "Sign-in refused: wrong password"."""
    said = SUMMARIES.get(action) or _plain(action)
    reason = _text(data, "reason")
    if action in _REFUSED and reason:
        return f"{said}: {_REASONS.get(reason, reason.replace('_', ' '))}"
    if action == "account:sessions:revoked" and data.get("why") == "totp_on":
        return "Other sessions signed out as two-step sign-in was turned on"
    if action == "account:session:revoked" and data.get("current") is True:
        return "This session was ended"
    if action == "account:passkey:removed" and data.get("why") == "password_reset":
        return "Passkey removed by the password reset"
    return said


def _plain(action: str) -> str:
    """A record this module has no words for (a newer one): its name, readable."""
    words = action.removeprefix("account:").replace(":", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "Account change"


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and 0 < len(value) <= _MAX_FIELD else None


# --- the API ----------------------------------------------------------------------------


class HistoryRead(Output):
    seq: int
    at: datetime
    action: str
    summary: str
    refused: bool
    via: str | None
    client: str | None
    reason: str | None


router = APIRouter(prefix="/v1", tags=["accounts"])


@router.get("/me/history", response_model=list[HistoryRead])
def my_history(
    request: Request,
    response: Response,
    session: SessionDep,
    resident: Resident,
    before: Annotated[int | None, Query(ge=1, description="records older than this seq")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
) -> object:
    """The signed-in resident's account history, newest first: sign-ins and refused
    attempts, password and two-step sign-in changes, ended sessions."""
    page = history(session, user_id=resident.id, before=before, limit=limit)
    if page.older is not None:
        older = f"{request.url.path}?before={page.older}&limit={limit}"
        response.headers["link"] = f'<{older}>; rel="next"'
    return [HistoryRead.model_validate(item) for item in page.items]
