"""Re-authentication for sensitive actions: "you again?" before the door is unlocked from
afar, the second factor is turned on or off, or every session is ended.

Re-entering the password (and a code, when two-step sign-in is on) on
`/account/reauth` marks this browser session as recently re-authenticated for
`REAUTH_SECONDS`. A route that needs it depends on `require_recent_auth` (or, for an async
route that goes on to wait for the writer thread, `require_recent_auth_briefly`):

    @router.post("/homes/{home_id}/unlock")
    def unlock(..., user: RecentlyAuthenticated) -> Response: ...

Without a recent mark the route raises `ReauthRequired` (403, `reauth_required`): a page
route answers with a redirect to `/account/reauth?next=<the page>`, a JSON route with the
error body, which the page's script can follow the same way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep import db
from doorstep.accounts import signins, twofactor
from doorstep.deps import Runtime, RuntimeDep
from doorstep.errors import Forbidden, NotAuthenticated
from doorstep.web import sessions
from doorstep.web.deps import (
    SessionForm,
    SignedInDep,
    UnitOfWork,
    WebDep,
    get_signed_in_briefly,
    session_csrf,
)
from doorstep.web.rendering import NO_STORE, PageRoute, render

REAUTH_SECONDS = 300
REAUTH_PATH = "/account/reauth"
TOO_MANY = "Too many attempts. Wait a minute, then try again."

router = APIRouter(route_class=PageRoute, include_in_schema=False)


class ReauthRequired(Forbidden):
    code = "reauth_required"

    def __init__(self, message: str, *, next_path: str) -> None:
        super().__init__(message, details={"reauth_url": reauth_url(next_path)})
        self.next_path = next_path


def reauth_url(next_path: str) -> str:
    return f"{REAUTH_PATH}?next={safe_next(next_path)}"


def safe_next(path: str | None, default: str = "/homes") -> str:
    """A path on this site only (no scheme, no host, no `//`), else `default`."""
    if not path:
        return default
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return default
    if parts.path.startswith("//") or "\\" in path:  # browsers read a backslash as a slash
        return default
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _coming_from(request: Request) -> str:
    """Where to come back to: this page for a GET, the page the form was on for a POST."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc == request.url.netloc:
        return referer.path
    return "/account/security"


def _check_recent(
    session: Session, request: Request, runtime: Runtime, user: sessions.SignedIn
) -> sessions.SignedIn:
    at = sessions.reauthenticated_at(session, user=user)
    now = runtime.clock.now()
    if at is None or now - at > timedelta(seconds=REAUTH_SECONDS) or at > now:
        raise ReauthRequired(
            "confirm it is you: enter your password again", next_path=_coming_from(request)
        )
    return user


def require_recent_auth(
    request: Request, runtime: RuntimeDep, session: UnitOfWork, user: SignedInDep
) -> sessions.SignedIn:
    """The signed-in resident, if they re-authenticated on this session in the last
    `REAUTH_SECONDS`; else `ReauthRequired`."""
    return _check_recent(session, request, runtime, user)


def require_recent_auth_briefly(
    request: Request,
    runtime: RuntimeDep,
    user: Annotated[sessions.SignedIn, Depends(get_signed_in_briefly)],
) -> sessions.SignedIn:
    """`require_recent_auth` on a session of its own, closed before the route runs (and
    read-only: async routes call it on the event loop)."""
    with runtime.sessions() as session:
        db.read_only(session)
        return _check_recent(session, request, runtime, user)


RecentlyAuthenticated = Annotated[sessions.SignedIn, Depends(require_recent_auth)]
RecentlyAuthenticatedBrief = Annotated[sessions.SignedIn, Depends(require_recent_auth_briefly)]


def _page(
    request: Request,
    web: WebDep,
    user: sessions.SignedIn,
    *,
    next_path: str,
    code_asked: bool,
    errors: dict[str, str],
    status: int = 200,
) -> HTMLResponse:
    context = {
        "title": "Confirm it is you",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "next_path": next_path,
        "code_asked": code_asked,
        "errors": errors,
        "values": {},
    }
    return render(request, "reauth.html", context, status=status)


@router.get(REAUTH_PATH)
def reauth_form(
    request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep, next: str = ""
) -> HTMLResponse:
    code_asked = twofactor.is_on(session, user_id=user.user.id)
    return _page(request, web, user, next_path=safe_next(next), code_asked=code_asked, errors={})


@router.post(REAUTH_PATH)
def reauthenticate(
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
) -> Response:
    next_path = safe_next(form.get("next"))
    code_asked = twofactor.is_on(session, user_id=user.user.id)
    now = runtime.clock.now()

    def again(errors: dict[str, str], status: int) -> HTMLResponse:
        return _page(
            request,
            web,
            user,
            next_path=next_path,
            code_asked=code_asked,
            errors=errors,
            status=status,
        )

    client = request.client.host if request.client else "-"
    session.commit()  # the limiter's count waits for the writers' turn, which this holds
    if not runtime.login_limiter.allow(client, runtime.clock.timestamp()):
        return again({"form": TOO_MANY}, 429)

    def failed(reason: signins.Failure) -> None:
        signins.reauth_failed(session, actor=user.principal.actor, user_id=user.user.id,
                              via=signins.Via.WEB, client=client, reason=reason,
                              now=now)  # fmt: skip

    try:
        sessions.check_password(
            session, email=user.user.email, password=form.get("password", ""), now=now
        )
    except NotAuthenticated as exc:
        failed(signins.failure_of(exc))
        return again({"password": "That is not your password."}, 422)
    if code_asked:
        try:
            good = twofactor.verify(
                session,
                user_id=user.user.id,
                code=form.get("code", ""),
                now=now,
                key=runtime.totp_key,
            )
        except twofactor.CodeLocked:
            failed(signins.Failure.CODE_LOCKED)
            return again({"form": "Too many wrong codes. Wait five minutes, then try again."}, 429)
        if not good:
            failed(signins.Failure.WRONG_CODE)
            return again({"code": "That code is not right, or was already used."}, 422)
    sessions.mark_reauthenticated(session, user=user, now=now)
    signins.reauthenticated(session, actor=user.principal.actor, user_id=user.user.id,
                            via=signins.Via.WEB, client=client, now=now)  # fmt: skip
    return RedirectResponse(f"{next_path}", status_code=303, headers=NO_STORE)
