"""Account pages: sign up, sign in (with the second factor when it is on), sign out.
Account security (two-step sign-in, sessions) is `doorstep.web.account_security`.

Sign-up, sign-in and the code step count against the service's sign-in limiter (per
client address, shared with `POST /v1/auth/token`); wrong codes also count per account
(`doorstep.accounts.twofactor`). A failed sign-in says the same whether or not the email has
an account. With two-step sign-in on, a right password only earns a signed, HttpOnly
cookie saying who and until when (5 minutes); the session starts after the code.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.accounts import signins, twofactor
from doorstep.accounts.models import Role, User
from doorstep.accounts.schemas import ResidentCreate
from doorstep.accounts.service import create_user
from doorstep.deps import Runtime, RuntimeDep
from doorstep.errors import Conflict, NotAuthenticated
from doorstep.web import sessions
from doorstep.web.deps import (
    SessionForm,
    UnitOfWork,
    VisitorForm,
    WebContext,
    WebDep,
    visitor_csrf,
)
from doorstep.web.forms import field_errors, values
from doorstep.web.rendering import NO_STORE, PageRoute, render, to_sign_in
from doorstep.web.security import sign_value, unsign_value

VISITOR_COOKIE_SECONDS = 2 * 3600
PENDING_SECONDS = 300
PENDING = "pending-sign-in"
CODE_PATH = "/signin/code"
CODE_TITLE = "Enter your code"
SIGN_IN = "Sign in"
SIGN_UP = "Create your account"
TOO_MANY = "Too many attempts from this network. Wait a minute, then try again."
WRONG = "Wrong email or password."
NOTICES = {
    "created": "Your account is ready. Sign in to add your home.",
    "signed-out": "You are signed out.",
    "everywhere": "You are signed out on every device.",
    "revoked": "This session was ended.",
    "code-expired": "Sign in again: the code was not given in time.",
}
SIGN_UP_HINTS = {
    "name": "Enter your name.",
    "email": "Enter an email address, like you@example.com.",
    "password": "Use at least 10 characters.",
}

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def client_address(request: Request) -> str:
    """The client's address as the limiters and the audit log name it."""
    return request.client.host if request.client else "-"


def visitor_page(
    request: Request,
    web: WebContext,
    template: str,
    context: Mapping[str, object],
    status: int = 200,
) -> HTMLResponse:
    """A page with a form used before signing in; its CSRF token is bound to a visitor
    cookie, set here if the browser has none yet."""
    nonce = request.cookies.get(web.cookies.visitor_cookie) or secrets.token_urlsafe(24)
    response = render(
        request, template, {"csrf_token": visitor_csrf(web, nonce), **context}, status=status
    )
    web.cookies.set(response, web.cookies.visitor_cookie, nonce, max_age=VISITOR_COOKIE_SECONDS)
    return response


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/homes", status_code=303)


@router.get("/signup")
def sign_up_form(request: Request, web: WebDep) -> HTMLResponse:
    return visitor_page(request, web, "signup.html", {"title": SIGN_UP, "values": {}, "errors": {}})


@router.post("/signup")
def sign_up(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    shown = {"title": SIGN_UP, "values": values(form, "name", "email")}
    if not runtime.login_limiter.allow(client_address(request), runtime.clock.timestamp()):
        return visitor_page(
            request, web, "signup.html", {**shown, "errors": {"form": TOO_MANY}}, 429
        )
    try:
        body = ResidentCreate(
            email=form.get("email", ""),
            name=form.get("name", ""),
            password=form.get("password", ""),
        )
    except ValidationError as exc:
        errors = field_errors(exc, SIGN_UP_HINTS)
        return visitor_page(request, web, "signup.html", {**shown, "errors": errors}, 422)
    try:
        create_user(
            session,
            email=body.email,
            name=body.name,
            password=body.password,
            role=Role.RESIDENT,
            now=runtime.clock.now(),
        )
    except Conflict:
        session.rollback()
        errors = {
            "form": "We could not create an account with these details. "
            "If you already have one, sign in instead."
        }
        return visitor_page(request, web, "signup.html", {**shown, "errors": errors}, 422)
    return RedirectResponse("/signin?notice=created", status_code=303, headers=NO_STORE)


@router.get("/signin")
def sign_in_form(request: Request, web: WebDep, notice: str = "") -> HTMLResponse:
    context: dict[str, object] = {
        "title": SIGN_IN,
        "values": {},
        "errors": {},
        "notice": NOTICES.get(notice),
    }
    return visitor_page(request, web, "signin.html", context)


@router.post("/signin")
def sign_in(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    shown = {"title": SIGN_IN, "values": values(form, "email"), "notice": None}
    if not runtime.login_limiter.allow(client_address(request), runtime.clock.timestamp()):
        return visitor_page(
            request, web, "signin.html", {**shown, "errors": {"form": TOO_MANY}}, 429
        )
    try:
        user = sessions.check_password(
            session, email=form.get("email", ""), password=form.get("password", ""),
            now=runtime.clock.now(),
        )  # fmt: skip
    except (NotAuthenticated, sessions.NotAResident) as exc:
        wrong = isinstance(exc, NotAuthenticated)
        signins.sign_in_failed(
            session, subject=signins.user_id_for(session, form.get("email", "")),
            via=signins.Via.WEB, client=client_address(request), now=runtime.clock.now(),
            reason=signins.failure_of(exc, otherwise=signins.Failure.NOT_A_RESIDENT),
        )  # fmt: skip
        message = WRONG if wrong else "This web app is for residents."
        return visitor_page(
            request, web, "signin.html", {**shown, "errors": {"form": message}}, 422
        )
    if twofactor.is_on(session, user_id=user.id):
        return _ask_for_code(web, user.id, runtime.clock.timestamp())
    return _start_session(request, session, runtime, web, user, signins.Via.WEB)


def _ask_for_code(web: WebContext, user_id: str, now: float) -> Response:
    """The password was right; the session starts once a code is given, within
    `PENDING_SECONDS`, from this browser (a signed, HttpOnly cookie holds who and until)."""
    response = RedirectResponse(CODE_PATH, status_code=303, headers=NO_STORE)
    pending = sign_value(web.csrf_key, PENDING, f"{user_id}.{int(now) + PENDING_SECONDS}")
    web.cookies.set(response, web.cookies.pending_cookie, pending, max_age=PENDING_SECONDS)
    return response


def _pending_user(request: Request, web: WebContext, now: float) -> str | None:
    value = unsign_value(web.csrf_key, PENDING, request.cookies.get(web.cookies.pending_cookie))
    user_id, _, until = (value or "").rpartition(".")
    if not user_id or not until.isdigit() or int(until) < now:
        return None
    return user_id


def _start_session(
    request: Request, session: Session, runtime: Runtime, web: WebContext, user: User,
    via: signins.Via,
) -> Response:  # fmt: skip
    ttl = timedelta(seconds=runtime.settings.auth.token_ttl_seconds)
    signins.signed_in(session, actor=f"{user.role}:{user.id}", subject=user.id, via=via,
                      client=client_address(request), now=runtime.clock.now())  # fmt: skip
    issued = sessions.start(
        session,
        user=user,
        user_agent=request.headers.get("user-agent", ""),
        now=runtime.clock.now(),
        ttl=ttl,
    )
    previous = request.cookies.get(web.cookies.session_cookie)
    if previous:
        sessions.sign_out(session, token=previous)  # one browser, one session
    response = RedirectResponse("/homes", status_code=303, headers=NO_STORE)
    web.cookies.set(
        response, web.cookies.session_cookie, issued.access_token, max_age=int(ttl.total_seconds())
    )
    web.cookies.clear(response, web.cookies.visitor_cookie)
    web.cookies.clear(response, web.cookies.pending_cookie)
    return response


@router.get(CODE_PATH)
def code_form(request: Request, web: WebDep, runtime: RuntimeDep) -> Response:
    if _pending_user(request, web, runtime.clock.timestamp()) is None:
        return RedirectResponse("/signin?notice=code-expired", status_code=303, headers=NO_STORE)
    return visitor_page(request, web, "signin_code.html", {"title": CODE_TITLE, "errors": {}})


@router.post(CODE_PATH)
def sign_in_with_code(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    user_id = _pending_user(request, web, runtime.clock.timestamp())
    user = session.get(User, user_id) if user_id else None
    if user is None:
        return RedirectResponse("/signin?notice=code-expired", status_code=303, headers=NO_STORE)
    shown = {"title": CODE_TITLE}
    session.commit()  # the limiter's count waits for the writers' turn, which this holds
    if not runtime.login_limiter.allow(client_address(request), runtime.clock.timestamp()):
        return visitor_page(
            request, web, "signin_code.html", {**shown, "errors": {"form": TOO_MANY}}, 429
        )
    try:
        good = twofactor.verify(
            session,
            user_id=user.id,
            code=form.get("code", ""),
            now=runtime.clock.now(),
            key=runtime.totp_key,
        )
    except twofactor.CodeLocked:
        _code_failed(request, session, runtime, user, signins.Failure.CODE_LOCKED)
        errors = {"form": "Too many wrong codes. Wait five minutes, then try again."}
        return visitor_page(request, web, "signin_code.html", {**shown, "errors": errors}, 429)
    if not good:
        _code_failed(request, session, runtime, user, signins.Failure.WRONG_CODE)
        errors = {"code": "That code is not right, or was already used. Try the newest one."}
        return visitor_page(request, web, "signin_code.html", {**shown, "errors": errors}, 422)
    return _start_session(request, session, runtime, web, user, signins.Via.WEB_CODE)


def _code_failed(
    request: Request, session: Session, runtime: Runtime, user: User, reason: signins.Failure
) -> None:
    signins.sign_in_failed(session, subject=user.id, via=signins.Via.WEB_CODE,
                           client=client_address(request), reason=reason,
                           now=runtime.clock.now())  # fmt: skip


@router.post("/signout")
def sign_out(request: Request, _form: SessionForm, session: UnitOfWork, web: WebDep) -> Response:
    sessions.sign_out(session, token=request.cookies.get(web.cookies.session_cookie, ""))
    return to_sign_in(request, "signed-out")
