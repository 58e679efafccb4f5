"""The cookie session of a phone app: the courier app (`doorstep.courier_web`) and the
guest and provider app (`doorstep.visitor_web`).

Each app signs its people in with an access token from `accounts.service.issue_token`,
kept in an HttpOnly cookie of its own (`doorstep_<app>`, or `__Host-doorstep_<app>` over
https), apart from the resident's session cookie and from each other's, so a browser
session of one app never reaches a page of another. The token is the person's bearer
token as far as the entry engine knows: an entry or a visit hands it to the engine, which
authenticates it like any other.

Each app makes one `PhoneSession` (its cookie, the roles it admits, its name for
messages). Its methods are the FastAPI dependencies of the app's routes:

    page_person      pages: the signed-in person, resolved in the request's unit of work
    api_person       JSON routes: resolved on a session of its own, closed before the
                     route runs, so no session holds SQLite's write lock while the route
                     waits on the writer thread (as `doorstep.deps.require_briefly`)
    writing_person   JSON routes that change anything: `api_person`, and the CSRF token
                     in the `X-CSRF-Token` header, bound to this session like the
                     resident forms' tokens
    form             a form posted from a page, its CSRF token checked
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from sqlalchemy.orm import Session

from doorstep.accounts.models import PrincipalKind, User
from doorstep.accounts.service import Principal, resolve_token
from doorstep.deps import RuntimeDep
from doorstep.errors import NotAuthenticated
from doorstep.permissions import PrincipalRole
from doorstep.security import token_digest
from doorstep.web.deps import CsrfRejected, UnitOfWork, WebContext, WebDep, read_form
from doorstep.web.security import (
    CSRF_FIELD,
    CookiePolicy,
    csrf_token,
    csrf_valid,
    session_binding,
)

CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class SignedIn:
    principal: Principal
    name: str
    token: str  # the session's access token, as the entry engine authenticates it
    digest: str  # its digest; the CSRF token is bound to it


@dataclass(frozen=True)
class PhoneSession:
    cookie: str  # the cookie's name over http; `__Host-` is prefixed over https
    roles: Collection[PrincipalRole]
    app: str  # how messages name the app: "the courier app"

    def cookie_name(self, cookies: CookiePolicy) -> str:
        return f"__Host-{self.cookie}" if cookies.secure else self.cookie

    def resolve(self, session: Session, *, token: str, now: datetime) -> SignedIn:
        """The user a session token belongs to, if their role is one this app admits."""
        principal = resolve_token(session, token=token, now=now)
        user = session.get(User, principal.id) if principal.kind == PrincipalKind.USER else None
        if user is None or principal.role not in self.roles:
            raise NotAuthenticated(f"sign in as a {' or a '.join(sorted(self.roles))}")
        return SignedIn(principal, user.name, token, token_digest(token))

    def _token(self, request: Request, web: WebContext) -> str:
        token = request.cookies.get(self.cookie_name(web.cookies))
        if not token:
            raise NotAuthenticated("sign in first")
        return token

    def page_person(
        self, request: Request, runtime: RuntimeDep, web: WebDep, session: UnitOfWork
    ) -> SignedIn:
        known = _resolved(request)
        if known is not None:
            return known
        person = self.resolve(session, token=self._token(request, web), now=runtime.clock.now())
        request.state.phone_person = person
        return person

    def api_person(self, request: Request, runtime: RuntimeDep, web: WebDep) -> SignedIn:
        known = _resolved(request)
        if known is not None:
            return known
        token = self._token(request, web)
        with runtime.sessions() as session:
            person = self.resolve(session, token=token, now=runtime.clock.now())
        request.state.phone_person = person
        return person

    def writing_person(self, request: Request, runtime: RuntimeDep, web: WebDep) -> SignedIn:
        person = self.api_person(request, runtime, web)
        given = request.headers.get(CSRF_HEADER)
        if not csrf_valid(web.csrf_key, session_binding(person.digest), given):
            raise CsrfRejected(f"this request did not come from {self.app}; reload the page")
        return person

    async def form(
        self, request: Request, runtime: RuntimeDep, web: WebDep, session: UnitOfWork
    ) -> dict[str, str]:
        person = self.page_person(request, runtime, web, session)
        form = await read_form(request)
        if not csrf_valid(web.csrf_key, session_binding(person.digest), form.get(CSRF_FIELD)):
            raise CsrfRejected("this form has expired; go back, reload the page and try again")
        return form


def _resolved(request: Request) -> SignedIn | None:
    """The person this request's session was already resolved to: `form` and
    `writing_person` resolve it themselves, and a route that also names the plain
    dependency gets the same answer without a second lookup."""
    person: SignedIn | None = getattr(request.state, "phone_person", None)
    return person


def page_csrf(web: WebContext, person: SignedIn) -> str:
    """The CSRF token a page of this session puts in its forms and script calls."""
    return csrf_token(web.csrf_key, session_binding(person.digest))
