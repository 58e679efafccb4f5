"""What the courier routes depend on: the courier app's context, the signed-in courier
(from the courier cookie), and for the JSON routes that change anything, the CSRF token
in the `X-CSRF-Token` header, bound to this session like the resident forms' tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import jinja2
from fastapi import Depends, Request

from doorstep.courier_web import sessions
from doorstep.courier_web.sessions import CourierSignedIn
from doorstep.deps import RuntimeDep
from doorstep.errors import NotAuthenticated
from doorstep.web.deps import CsrfRejected, UnitOfWork, WebContext, WebDep, read_form
from doorstep.web.security import CSRF_FIELD, csrf_token, csrf_valid, session_binding

CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class CourierWebContext:
    """Built once by `install` and kept in `app.state.courier_web`."""

    templates: jinja2.Environment
    asset_version: str


def get_courier_web(request: Request) -> CourierWebContext:
    context: CourierWebContext = request.app.state.courier_web
    return context


CourierWebDep = Annotated[CourierWebContext, Depends(get_courier_web)]


def _token(request: Request, web: WebContext) -> str:
    token = request.cookies.get(sessions.cookie_name(web.cookies))
    if not token:
        raise NotAuthenticated("sign in first")
    return token


def get_page_courier(
    request: Request, runtime: RuntimeDep, web: WebDep, session: UnitOfWork
) -> CourierSignedIn:
    """For pages: resolved in the request's own unit of work."""
    return sessions.resolve(session, token=_token(request, web), now=runtime.clock.now())


def get_courier(request: Request, runtime: RuntimeDep, web: WebDep) -> CourierSignedIn:
    """For the JSON routes: resolved on a session of its own, closed before the route
    runs, so no session holds SQLite's write lock while the route waits on the writer
    thread (as `doorstep.deps.require_briefly`)."""
    token = _token(request, web)
    with runtime.sessions() as session:
        return sessions.resolve(session, token=token, now=runtime.clock.now())


PageCourier = Annotated[CourierSignedIn, Depends(get_page_courier)]
ApiCourier = Annotated[CourierSignedIn, Depends(get_courier)]


def get_writing_courier(request: Request, web: WebDep, courier: ApiCourier) -> CourierSignedIn:
    given = request.headers.get(CSRF_HEADER)
    if not csrf_valid(web.csrf_key, session_binding(courier.digest), given):
        raise CsrfRejected("this request did not come from the courier app; reload the page")
    return courier


WritingCourier = Annotated[CourierSignedIn, Depends(get_writing_courier)]


def page_csrf(web: WebContext, courier: CourierSignedIn) -> str:
    return csrf_token(web.csrf_key, session_binding(courier.digest))


async def get_courier_form(request: Request, web: WebDep, courier: PageCourier) -> dict[str, str]:
    """A form posted from a courier page, its CSRF token checked."""
    form = await read_form(request)
    if not csrf_valid(web.csrf_key, session_binding(courier.digest), form.get(CSRF_FIELD)):
        raise CsrfRejected("this form has expired; go back, reload the page and try again")
    return form


CourierForm = Annotated[dict[str, str], Depends(get_courier_form)]
