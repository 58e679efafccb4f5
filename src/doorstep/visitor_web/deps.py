"""What the guest and provider routes depend on: the app's context, the signed-in guest
or worker (from the guest cookie), and, for everything that changes anything, the CSRF
token bound to that session (a form field on forms, `X-CSRF-Token` on the script's
JSON calls), checked as the resident and courier apps check theirs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import jinja2
from fastapi import Depends, Request

from doorstep.courier_web.deps import CSRF_HEADER
from doorstep.deps import RuntimeDep
from doorstep.errors import NotAuthenticated
from doorstep.visitor_web import sessions
from doorstep.visitor_web.sessions import SignedIn
from doorstep.web.deps import CsrfRejected, UnitOfWork, WebContext, WebDep, read_form
from doorstep.web.security import CSRF_FIELD, csrf_valid, session_binding


@dataclass(frozen=True, slots=True)
class VisitorWebContext:
    """Built once by `install` and kept in `app.state.visitor_web`."""

    templates: jinja2.Environment
    asset_version: str


def _token(request: Request, web: WebContext) -> str:
    token = request.cookies.get(sessions.cookie_name(web.cookies))
    if not token:
        raise NotAuthenticated("sign in first")
    return token


def get_page_person(
    request: Request, runtime: RuntimeDep, web: WebDep, session: UnitOfWork
) -> SignedIn:
    """For pages: resolved in the request's own unit of work."""
    return sessions.resolve(session, token=_token(request, web), now=runtime.clock.now())


def get_person(request: Request, runtime: RuntimeDep, web: WebDep) -> SignedIn:
    """For the JSON routes: resolved on a session of its own, closed before the route
    runs (no session holds SQLite's write lock while the route waits on the writer)."""
    token = _token(request, web)
    with runtime.sessions() as session:
        return sessions.resolve(session, token=token, now=runtime.clock.now())


PagePerson = Annotated[SignedIn, Depends(get_page_person)]
ApiPerson = Annotated[SignedIn, Depends(get_person)]


def get_writing_person(request: Request, web: WebDep, person: ApiPerson) -> SignedIn:
    given = request.headers.get(CSRF_HEADER)
    if not csrf_valid(web.csrf_key, session_binding(person.digest), given):
        raise CsrfRejected("this request did not come from the guest app; reload the page")
    return person


WritingPerson = Annotated[SignedIn, Depends(get_writing_person)]


async def get_person_form(request: Request, web: WebDep, person: PagePerson) -> dict[str, str]:
    """A form posted from a guest or provider page, its CSRF token checked."""
    form = await read_form(request)
    if not csrf_valid(web.csrf_key, session_binding(person.digest), form.get(CSRF_FIELD)):
        raise CsrfRejected("this form has expired; go back, reload the page and try again")
    return form


PersonForm = Annotated[dict[str, str], Depends(get_person_form)]
