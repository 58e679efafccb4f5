"""Account security: two-step sign-in (an authenticator app, with recovery codes), the
active sessions (device, signed in, last seen, expiry) with "end" for each, and "sign out
everywhere" (every session and API token of the account).

Turning two-step sign-in on (starting the set-up, and confirming it with a code) or off,
and signing out everywhere, need a recent re-authentication (`doorstep.web.reauth`);
ending one session does not. Turning it on ends every other session and API token of
the account (`account:sessions:revoked`, `why` `totp_on`); this browser's stays. The
password is changed on its own page (`doorstep.web.passwords`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.accounts import signins, totp, twofactor
from doorstep.deps import RuntimeDep
from doorstep.web import sessions
from doorstep.web.account import client_address
from doorstep.web.deps import (
    SessionForm,
    SignedInDep,
    UnitOfWork,
    WebContext,
    WebDep,
    session_csrf,
)
from doorstep.web.reauth import ReauthRequired, RecentlyAuthenticated, require_recent_auth
from doorstep.web.rendering import NO_STORE, PageRoute, render, to_sign_in

SECURITY_PATH = "/account/security"
NOTICES = {
    "totp-off": "Two-step sign-in is off. Your password alone now signs you in.",
    "session-ended": "That session was ended.",
    "password-changed": "Your password is changed. Every other browser, phone and API token "
    "of this account was signed out; this browser has a new session.",
}

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get(SECURITY_PATH)
def security(
    request: Request,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
    notice: str = "",
) -> HTMLResponse:
    now = runtime.clock.now()
    active = sessions.active_sessions(session, user=user, now=now, key=web.csrf_key)
    current = next((item for item in active if item.current), None)
    return render(
        request,
        "security.html",
        {
            "title": "Account security",
            "user": user.user,
            "csrf_token": session_csrf(web, user),
            "sessions": active,
            "current": current,
            "totp_on": twofactor.is_on(session, user_id=user.user.id),
            "recovery_left": twofactor.recovery_left(session, user_id=user.user.id),
            "notice": NOTICES.get(notice),
        },
    )


@router.post("/account/sessions/end")
def end_session(
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
) -> Response:
    own = sessions.revoke(
        session,
        user=user,
        handle=form.get("session", ""),
        now=runtime.clock.now(),
        key=web.csrf_key,
    )
    if own:
        return to_sign_in(request, "revoked")
    return _back("session-ended")


@router.post("/account/signout-everywhere")
def sign_out_everywhere(
    request: Request,
    _form: SessionForm,
    session: UnitOfWork,
    user: RecentlyAuthenticated,
    runtime: RuntimeDep,
) -> Response:
    sessions.sign_out_everywhere(session, user=user, now=runtime.clock.now())
    return to_sign_in(request, "everywhere")


def _recent_for_set_up(
    request: Request, runtime: RuntimeDep, session: UnitOfWork, user: SignedInDep
) -> sessions.SignedIn:
    """`require_recent_auth`, coming back to the security page: the set-up page is the
    answer to a POST, with no address to come back to (the set-up starts again there)."""
    try:
        return require_recent_auth(request, runtime, session, user)
    except ReauthRequired as exc:
        raise ReauthRequired(exc.message, next_path=SECURITY_PATH) from exc


RecentForSetUp = Annotated[sessions.SignedIn, Depends(_recent_for_set_up)]


def _setup_page(
    request: Request,
    web: WebContext,
    user: sessions.SignedIn,
    secret: bytes,
    errors: dict[str, str],
    status: int = 200,
) -> HTMLResponse:
    key = totp.base32(secret)
    context = {
        "title": "Set up two-step sign-in",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "uri": totp.otpauth_uri(secret, account=user.user.email),
        "manual_key": totp.grouped(key),
        "errors": errors,
        "values": {},
    }
    return render(request, "totp_setup.html", context, status=status)


@router.post("/account/totp/setup")
def start_totp(
    request: Request,
    _form: SessionForm,
    session: UnitOfWork,
    user: RecentlyAuthenticated,
    runtime: RuntimeDep,
    web: WebDep,
) -> HTMLResponse:
    secret = twofactor.start_enrollment(
        session, user=user.user, now=runtime.clock.now(), key=runtime.totp_key,
        via=signins.Via.WEB, client=client_address(request),
    )  # fmt: skip
    return _setup_page(request, web, user, secret, {})


@router.post("/account/totp/confirm")
def confirm_totp(
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: RecentForSetUp,
    runtime: RuntimeDep,
    web: WebDep,
) -> HTMLResponse:
    try:
        turned_on = twofactor.turn_on(
            session, user=user.user, code=form.get("code", ""), now=runtime.clock.now(),
            key=runtime.totp_key, keep=user.digest, via=signins.Via.WEB,
            client=client_address(request),
        )  # fmt: skip
    except twofactor.CodeLocked:  # too many wrong codes: the form again, saying so
        turned_on, errors, status = None, {"code": LOCKED}, 429
    else:
        errors = {"code": "That code is not right. Type the 6 digits the app shows now."}
        status = 422
    if turned_on is None:
        pending = twofactor.pending_secret(session, user_id=user.user.id, key=runtime.totp_key)
        assert pending is not None  # `confirm` raised otherwise
        return _setup_page(request, web, user, pending, errors, status)
    sessions.forget_ended(session, user_id=user.user.id)
    context = {
        "title": "Save your recovery codes",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "codes": turned_on.recovery_codes,
    }
    return render(request, "totp_done.html", context)


LOCKED = "Too many wrong codes. Wait a few minutes, then type the code the app shows."


@router.post("/account/totp/disable")
def disable_totp(
    request: Request,
    _form: SessionForm,
    session: UnitOfWork,
    user: RecentlyAuthenticated,
    runtime: RuntimeDep,
) -> Response:
    twofactor.turn_off(session, user=user.user, now=runtime.clock.now(), via=signins.Via.WEB,
                       client=client_address(request))  # fmt: skip
    return _back("totp-off")


def _back(notice: str) -> RedirectResponse:
    return RedirectResponse(f"{SECURITY_PATH}?notice={notice}", status_code=303, headers=NO_STORE)
