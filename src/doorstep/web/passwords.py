"""Password pages: change it (signed in), and "Forgot your password?" (signed out), for
every account (residents, couriers, guests and provider workers; the sign-in page of
each app links here). The rules and the records are `doorstep.accounts.passwords`'.

    GET  /account/password, POST   change it: the current password (and a code, with
                                   two-step sign-in on) and the new one; every session
                                   and API token of the account ends, and this browser
                                   gets a fresh session
    GET  /password/forgot, POST    ask for a link by email; the answer is the same
                                   whether or not the email has an account
    GET  /password/reset, POST     choose a new password with the link's token (in the
                                   URL fragment: `static/app.js` moves it into the form)

The change counts against the sign-in limiter per client address, like re-authentication;
asking for a link and using one, against the claim limiter (10 a minute per address,
under `reset:`), besides the per-account limits of `accounts.passwords`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.accounts import passwords, signins, twofactor
from doorstep.accounts.models import Role
from doorstep.accounts.schemas import NewPassword, PasswordChange
from doorstep.deps import Runtime, RuntimeDep
from doorstep.web import sessions
from doorstep.web.account import TOO_MANY, client_address, visitor_page
from doorstep.web.account_security import SECURITY_PATH
from doorstep.web.deps import SessionForm, SignedInDep, UnitOfWork, VisitorForm, WebDep
from doorstep.web.deps import session_csrf as csrf_of
from doorstep.web.forms import field_errors, values
from doorstep.web.rendering import NO_STORE, PageRoute, render

CHANGE_PATH = "/account/password"
CHANGE_TITLE = "Change your password"
FORGOT_TITLE = "Forgot your password?"
RESET_TITLE = "Choose a new password"
NEW_HINT = "At least 10 characters."
LINK_GONE = "This link is unknown, used or expired. Ask for a new one below."
WRONG_CODE = "That code is not right, or was already used."
CODE_LOCKED = "Too many wrong codes. Wait five minutes, then try again."
EMAIL_HINT = "Enter an email address, like you@example.com."
# Where each kind of account signs in again after a reset.
SIGN_IN_PAGES = {
    Role.RESIDENT: ("/signin", "Sign in"),
    Role.COURIER: ("/courier/signin", "Sign in to the courier app"),
    Role.GUEST: ("/guest/signin", "Sign in"),
    Role.WORKER: ("/guest/signin", "Sign in"),
}

router = APIRouter(route_class=PageRoute, include_in_schema=False)


# --- change (signed in) ----------------------------------------------------------------


def _change_page(
    request: Request,
    web: WebDep,
    user: sessions.SignedIn,
    code_asked: bool,
    errors: Mapping[str, str],
    status: int = 200,
) -> HTMLResponse:
    context = {
        "title": CHANGE_TITLE,
        "user": user.user,
        "csrf_token": csrf_of(web, user),
        "code_asked": code_asked,
        "errors": dict(errors),
        "values": {},
    }
    return render(request, "password_change.html", context, status=status)


@router.get(CHANGE_PATH)
def change_form(
    request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep
) -> HTMLResponse:
    return _change_page(request, web, user, twofactor.is_on(session, user_id=user.user.id), {})


@router.post(CHANGE_PATH)
def change(
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
) -> Response:
    code_asked = twofactor.is_on(session, user_id=user.user.id)
    session.commit()  # the limiter's count waits for the writers' turn, which this holds
    if not runtime.login_limiter.allow(client_address(request), runtime.clock.timestamp()):
        return _change_page(request, web, user, code_asked, {"form": TOO_MANY}, 429)
    try:
        body = PasswordChange(
            current_password=form.get("current_password", ""),
            new_password=form.get("new_password", ""),
            code=form.get("code") or None,
        )
    except ValidationError as exc:
        hints = {"current_password": "Enter your current password.", "new_password": NEW_HINT}
        return _change_page(request, web, user, code_asked, field_errors(exc, hints), 422)
    now = runtime.clock.now()
    failure = passwords.confirm_identity(
        session, user=user.user, password=body.current_password, code=body.code, now=now,
        key=runtime.totp_key, via=signins.Via.PASSWORD_CHANGE, client=client_address(request),
    )  # fmt: skip
    if failure is not None:
        errors = {
            signins.Failure.CODE_LOCKED: ({"form": CODE_LOCKED}, 429),
            signins.Failure.WRONG_CODE: ({"code": WRONG_CODE}, 422),
        }.get(failure, ({"current_password": "That is not your current password."}, 422))
        return _change_page(request, web, user, code_asked, *errors)
    passwords.set_password(session, user=user.user, password=body.new_password, now=now,
                           via=signins.Via.PASSWORD_CHANGE,
                           client=client_address(request))  # fmt: skip
    return _fresh_session(request, runtime, web, session, user)


def _fresh_session(
    request: Request, runtime: Runtime, web: WebDep, session: UnitOfWork, user: sessions.SignedIn
) -> Response:
    """Every session ended with the change, this browser's too: it carries on with a new
    one, so a copy of the old cookie is worth nothing."""
    ttl = timedelta(seconds=runtime.settings.auth.token_ttl_seconds)
    issued = sessions.start(session, user=user.user, now=runtime.clock.now(), ttl=ttl,
                            user_agent=request.headers.get("user-agent", ""))  # fmt: skip
    response = RedirectResponse(
        f"{SECURITY_PATH}?notice=password-changed", status_code=303, headers=NO_STORE
    )
    web.cookies.set(
        response, web.cookies.session_cookie, issued.access_token, max_age=int(ttl.total_seconds())
    )
    return response


# --- forgot and reset (signed out) -----------------------------------------------------


@router.get("/password/forgot")
def forgot_form(request: Request, web: WebDep) -> HTMLResponse:
    context = {"title": FORGOT_TITLE, "values": {}, "errors": {}, "sent": False, "minutes": 0}
    return visitor_page(request, web, "password_forgot.html", context)


@router.post("/password/forgot")
def forgot(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    """The same page for every address that looks like one: a link went out if an
    account uses it (and has not had too many lately)."""
    minutes = runtime.settings.auth.password_reset_ttl_seconds // 60
    shown = {"title": FORGOT_TITLE, "values": values(form, "email"), "sent": False,
             "minutes": minutes}  # fmt: skip
    email = form.get("email", "").strip()
    if not runtime.claim_limiter.allow(
        f"reset:{client_address(request)}", runtime.clock.timestamp()
    ):
        return visitor_page(request, web, "password_forgot.html",
                            {**shown, "errors": {"form": TOO_MANY}}, 429)  # fmt: skip
    if not 3 <= len(email) <= 320 or "@" not in email or any(c.isspace() for c in email):
        return visitor_page(request, web, "password_forgot.html",
                            {**shown, "errors": {"email": EMAIL_HINT}}, 422)  # fmt: skip
    auth = runtime.settings.auth
    passwords.request_reset(
        session, email=email, now=runtime.clock.now(),
        ttl=timedelta(seconds=auth.password_reset_ttl_seconds),
        per_hour=auth.password_resets_per_hour,
        public_url=runtime.settings.resolved_public_url, client=client_address(request),
    )  # fmt: skip
    return visitor_page(request, web, "password_forgot.html",
                        {**shown, "errors": {}, "sent": True})  # fmt: skip


def _reset_page(
    request: Request, web: WebDep, token: str, errors: Mapping[str, str], status: int = 200
) -> HTMLResponse:
    context = {"title": RESET_TITLE, "token": token, "values": {}, "errors": dict(errors)}
    return visitor_page(request, web, "password_reset.html", context, status)


@router.get(passwords.RESET_PATH)
def reset_form(request: Request, web: WebDep) -> HTMLResponse:
    return _reset_page(request, web, "", {})


@router.post(passwords.RESET_PATH)
def reset(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    token = form.get("token", "")
    if not runtime.claim_limiter.allow(
        f"reset:{client_address(request)}", runtime.clock.timestamp()
    ):
        return _reset_page(request, web, token, {"form": TOO_MANY}, 429)
    try:
        body = NewPassword(password=form.get("password", ""))
    except ValidationError as exc:
        return _reset_page(request, web, token, field_errors(exc, {"password": NEW_HINT}), 422)
    try:
        user = passwords.complete_reset(
            session, token=token, password=body.password, code=form.get("code") or None,
            now=runtime.clock.now(), key=runtime.totp_key, client=client_address(request),
        )  # fmt: skip
    except passwords.ResetLinkInvalid:
        return _reset_page(request, web, "", {"form": LINK_GONE}, 422)
    except twofactor.CodeLocked:
        return _reset_page(request, web, token, {"form": CODE_LOCKED}, 429)
    except twofactor.CodeRefused:
        errors = {"code": "Two-step sign-in is on for this account: " + WRONG_CODE}
        return _reset_page(request, web, token, errors, 422)
    sessions.forget_ended(session, user_id=user.id)
    where, label = SIGN_IN_PAGES.get(Role(user.role), ("/signin", "Sign in"))
    context = {"title": "Your password is changed", "sign_in": where, "sign_in_label": label}
    return render(request, "password_reset_done.html", context)
