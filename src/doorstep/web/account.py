"""Account pages: sign up, sign in, sign out, and account security (active sessions,
sign out everywhere).

Sign-up and sign-in count against the service's sign-in limiter (per client address,
shared with `POST /v1/auth/token`). A failed sign-in says the same whether or not the
email has an account.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.accounts.models import Role
from doorstep.accounts.schemas import ResidentCreate
from doorstep.accounts.service import create_user
from doorstep.deps import RuntimeDep
from doorstep.errors import Conflict, NotAuthenticated
from doorstep.web import sessions
from doorstep.web.deps import (
    SessionForm,
    SignedInDep,
    UnitOfWork,
    VisitorForm,
    WebContext,
    WebDep,
    session_csrf,
    visitor_csrf,
)
from doorstep.web.forms import field_errors, values
from doorstep.web.rendering import NO_STORE, PageRoute, render, to_sign_in

VISITOR_COOKIE_SECONDS = 2 * 3600
SIGN_IN = "Sign in"
SIGN_UP = "Create your account"
TOO_MANY = "Too many attempts from this network. Wait a minute, then try again."
WRONG = "Wrong email or password."
NOTICES = {
    "created": "Your account is ready. Sign in to add your home.",
    "signed-out": "You are signed out.",
    "everywhere": "You are signed out on every device.",
}
SIGN_UP_HINTS = {
    "name": "Enter your name.",
    "email": "Enter an email address, like you@example.com.",
    "password": "Use at least 10 characters.",
}

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _visitor_page(
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
    return _visitor_page(
        request, web, "signup.html", {"title": SIGN_UP, "values": {}, "errors": {}}
    )


@router.post("/signup")
def sign_up(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    shown = {"title": SIGN_UP, "values": values(form, "name", "email")}
    if not runtime.login_limiter.allow(_client(request), runtime.clock.timestamp()):
        return _visitor_page(
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
        return _visitor_page(request, web, "signup.html", {**shown, "errors": errors}, 422)
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
        return _visitor_page(request, web, "signup.html", {**shown, "errors": errors}, 422)
    return RedirectResponse("/signin?notice=created", status_code=303, headers=NO_STORE)


@router.get("/signin")
def sign_in_form(request: Request, web: WebDep, notice: str = "") -> HTMLResponse:
    context: dict[str, object] = {
        "title": SIGN_IN,
        "values": {},
        "errors": {},
        "notice": NOTICES.get(notice),
    }
    return _visitor_page(request, web, "signin.html", context)


@router.post("/signin")
def sign_in(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    shown = {"title": SIGN_IN, "values": values(form, "email"), "notice": None}
    if not runtime.login_limiter.allow(_client(request), runtime.clock.timestamp()):
        return _visitor_page(
            request, web, "signin.html", {**shown, "errors": {"form": TOO_MANY}}, 429
        )
    ttl = timedelta(seconds=runtime.settings.auth.token_ttl_seconds)
    try:
        issued = sessions.sign_in(
            session,
            email=form.get("email", ""),
            password=form.get("password", ""),
            now=runtime.clock.now(),
            ttl=ttl,
        )
    except (NotAuthenticated, sessions.NotAResident) as exc:
        message = WRONG if isinstance(exc, NotAuthenticated) else "This web app is for residents."
        return _visitor_page(
            request, web, "signin.html", {**shown, "errors": {"form": message}}, 422
        )
    previous = request.cookies.get(web.cookies.session_cookie)
    if previous:
        sessions.sign_out(session, token=previous)  # one browser, one session
    response = RedirectResponse("/homes", status_code=303, headers=NO_STORE)
    web.cookies.set(
        response, web.cookies.session_cookie, issued.access_token, max_age=int(ttl.total_seconds())
    )
    web.cookies.clear(response, web.cookies.visitor_cookie)
    return response


@router.post("/signout")
def sign_out(request: Request, _form: SessionForm, session: UnitOfWork, web: WebDep) -> Response:
    sessions.sign_out(session, token=request.cookies.get(web.cookies.session_cookie, ""))
    return to_sign_in(request, "signed-out")


@router.get("/account/security")
def security(
    request: Request, session: UnitOfWork, user: SignedInDep, runtime: RuntimeDep, web: WebDep
) -> HTMLResponse:
    active = sessions.active_sessions(session, user=user, now=runtime.clock.now())
    return render(
        request,
        "security.html",
        {
            "title": "Account security",
            "user": user.user,
            "csrf_token": session_csrf(web, user),
            "sessions": active,
        },
    )


@router.post("/account/signout-everywhere")
def sign_out_everywhere(
    request: Request,
    _form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
) -> Response:
    sessions.sign_out_everywhere(session, user=user, now=runtime.clock.now())
    return to_sign_in(request, "everywhere")
