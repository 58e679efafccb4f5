"""Guest and worker pages: the invitation, sign in, sign out, the person's access
(grants, and a worker's appointments, which are their grants), and one grant with its
"Open the door" flow (the live part is `static/guest.js`).

The invitation link carries its token in the URL fragment (`/guest/accept#<token>`), so
it never reaches a server log: the page's script moves it into the form, which posts it
in the body. Accepting counts against the same limiter as `POST /v1/invitations/accept`;
sign-in against the resident's sign-in limiter, and says the same for an unknown email
and a wrong password.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.accounts import signins
from doorstep.accounts.models import User
from doorstep.accounts.service import IssuedToken
from doorstep.courier_web.pages import TOO_MANY, VISITOR_COOKIE_SECONDS, WRONG
from doorstep.deps import Runtime, RuntimeDep
from doorstep.errors import NotAuthenticated
from doorstep.grants import service as grants
from doorstep.grants.models import MemberRole, ProviderMember
from doorstep.grants.schemas import InvitationAccept
from doorstep.visitor_web import passes, sessions
from doorstep.visitor_web.deps import PagePerson, PersonForm
from doorstep.visitor_web.rendering import VisitorPageRoute, render, to_sign_in
from doorstep.web import sessions as web_sessions
from doorstep.web.deps import UnitOfWork, VisitorForm, WebContext, WebDep, visitor_csrf
from doorstep.web.forms import field_errors, values
from doorstep.web.phone_session import SignedIn, page_csrf
from doorstep.web.rendering import NO_STORE

NOTICES = {"signed-out": "You are signed out."}
INVITATION_GONE = "This invitation is unknown, used or expired. Ask for a new one."
ALREADY_SET_UP = (
    "This account already has a password: enter it to accept this invitation (or use"
    ' "Forgot your password?" on the sign-in page).'
)
ACCEPT_HINTS = {"password": "At least 10 characters.", "token": INVITATION_GONE}

router = APIRouter(route_class=VisitorPageRoute, include_in_schema=False)


def is_admin(session: Session, person: SignedIn) -> bool:
    """Whether the person runs a provider (the portal's link is shown to them only)."""
    return (
        session.scalar(
            select(ProviderMember.provider_id).where(
                ProviderMember.user_id == person.principal.id,
                ProviderMember.role == MemberRole.ADMIN,
                ProviderMember.active.is_(True),
            )
        )
        is not None
    )


def person_context(session: Session, web: WebContext, person: SignedIn) -> dict[str, Any]:
    """What every signed-in page's layout needs."""
    return {
        "person": person,
        "csrf_token": page_csrf(web, person),
        "is_admin": is_admin(session, person),
    }


def _anonymous_page(
    request: Request, web: WebContext, template: str, context: dict[str, Any], status: int
) -> HTMLResponse:
    """A form for someone not signed in; its CSRF token is bound to the visitor cookie."""
    nonce = request.cookies.get(web.cookies.visitor_cookie) or secrets.token_urlsafe(24)
    shown = {"values": {}, "errors": {}, **context, "csrf_token": visitor_csrf(web, nonce)}
    response = render(request, template, shown, status=status)
    web.cookies.set(response, web.cookies.visitor_cookie, nonce, max_age=VISITOR_COOKIE_SECONDS)
    return response


def _signed_in(
    request: Request, session: Session, web: WebContext, issued: IssuedToken, ttl: timedelta
) -> Response:
    """To the person's access, with the session cookie set (and any previous session of
    this browser's ended: one browser, one guest session)."""
    cookie = sessions.SESSION.cookie_name(web.cookies)
    previous = request.cookies.get(cookie)
    if previous:
        web_sessions.sign_out(session, token=previous)
    response = RedirectResponse("/guest", status_code=303, headers=NO_STORE)
    web.cookies.set(response, cookie, issued.access_token, max_age=int(ttl.total_seconds()))
    web.cookies.clear(response, web.cookies.visitor_cookie)
    return response


def _ttl(runtime: Runtime) -> timedelta:
    return timedelta(seconds=runtime.settings.auth.token_ttl_seconds)


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


@router.get("/guest/accept")
def accept_form(request: Request, web: WebDep) -> HTMLResponse:
    return _anonymous_page(
        request, web, "visitor_accept.html", {"title": "Accept your invitation", "token": ""}, 200
    )


@router.post("/guest/accept")
def accept(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    """Accept the invitation, then sign in: the first one an account accepts sets its
    password (and the name if given); a further one takes that password, unchanged
    (`grants.accept_invitation`)."""
    token = form.get("token", "")
    shown = {"title": "Accept your invitation", "token": token, "values": values(form, "name")}
    if not runtime.claim_limiter.allow(f"invite:{_client(request)}", runtime.clock.timestamp()):
        return _anonymous_page(request, web, "visitor_accept.html",
                               {**shown, "errors": {"form": TOO_MANY}}, 429)  # fmt: skip
    try:
        body = InvitationAccept(
            token=token, password=form.get("password", ""), name=form.get("name") or None
        )
        user = grants.accept_invitation(
            session, token=body.token, password=body.password, name=body.name,
            now=runtime.clock.now(), client=_client(request),
        )  # fmt: skip
        issued = sessions.start(session, user=user, now=runtime.clock.now(), ttl=_ttl(runtime))
    except ValidationError as exc:
        errors = field_errors(exc, ACCEPT_HINTS)
        if "token" in errors:
            errors = {"form": INVITATION_GONE}
        return _anonymous_page(request, web, "visitor_accept.html",
                               {**shown, "errors": errors}, 422)  # fmt: skip
    except grants.ExistingPasswordRequired:
        return _anonymous_page(request, web, "visitor_accept.html",
                               {**shown, "errors": {"form": ALREADY_SET_UP}}, 422)  # fmt: skip
    except NotAuthenticated:
        return _anonymous_page(request, web, "visitor_accept.html",
                               {**shown, "errors": {"form": INVITATION_GONE}}, 422)  # fmt: skip
    return _signed_in(request, session, web, issued, _ttl(runtime))


@router.get("/guest/signin")
def sign_in_form(request: Request, web: WebDep, notice: str = "") -> HTMLResponse:
    context = {"title": "Sign in", "notice": NOTICES.get(notice)}
    return _anonymous_page(request, web, "visitor_signin.html", context, 200)


@router.post("/guest/signin")
def sign_in(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    shown = {"title": "Sign in", "values": values(form, "email")}
    if not runtime.login_limiter.allow(_client(request), runtime.clock.timestamp()):
        return _anonymous_page(request, web, "visitor_signin.html",
                               {**shown, "errors": {"form": TOO_MANY}}, 429)  # fmt: skip
    now, email, client = runtime.clock.now(), form.get("email", ""), _client(request)
    try:
        issued = sessions.sign_in(
            session, email=email, password=form.get("password", ""), now=now, ttl=_ttl(runtime),
        )  # fmt: skip
    except (NotAuthenticated, sessions.NotAVisitor) as exc:
        signins.sign_in_failed(
            session, subject=signins.user_id_for(session, email), via=signins.Via.VISITOR_WEB,
            client=client, now=now,
            reason=signins.failure_of(exc, otherwise=signins.Failure.NOT_A_VISITOR),
        )  # fmt: skip
        message = WRONG if isinstance(exc, NotAuthenticated) else f"{exc.message.capitalize()}."
        return _anonymous_page(request, web, "visitor_signin.html",
                               {**shown, "errors": {"form": message}}, 422)  # fmt: skip
    role = session.scalar(select(User.role).where(User.id == issued.principal_id))
    signins.signed_in(session, actor=f"{role}:{issued.principal_id}", subject=issued.principal_id,
                      via=signins.Via.VISITOR_WEB, client=client, now=now)  # fmt: skip
    return _signed_in(request, session, web, issued, _ttl(runtime))


@router.post("/guest/signout")
def sign_out(
    request: Request, _form: PersonForm, session: UnitOfWork, person: PagePerson
) -> Response:
    """Ends this session. The phone's key stays registered and in this browser."""
    web_sessions.sign_out(session, token=person.token)
    return to_sign_in(request, "signed-out")


@router.get("/guest")
def passes_page(
    request: Request, session: UnitOfWork, person: PagePerson, web: WebDep
) -> HTMLResponse:
    return render(
        request,
        "visitor_passes.html",
        {
            **person_context(session, web, person),
            "title": "Your access",
            "passes": passes.mine(session, person=person.principal),
        },
    )


@router.get("/guest/grants/{grant_id}")
def pass_page(
    grant_id: str, request: Request, session: UnitOfWork, person: PagePerson, web: WebDep
) -> HTMLResponse:
    shown = passes.one(session, person=person.principal, grant_id=grant_id)
    return render(
        request,
        "visitor_pass.html",
        {
            **person_context(session, web, person),
            "title": shown.home_name,
            "pass": shown,
            "open_entry": passes.open_entry(session, person=person.principal, grant_id=grant_id),
        },
    )
