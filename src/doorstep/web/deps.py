"""What the web routes depend on: the web context, the unit of work, the signed-in
resident, and forms whose CSRF token has been checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl

import jinja2
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from doorstep.deps import RuntimeDep, get_writing_session
from doorstep.errors import Forbidden, InvalidRequest, NotAuthenticated
from doorstep.web import sessions
from doorstep.web.security import (
    CSRF_FIELD,
    CookiePolicy,
    csrf_token,
    csrf_valid,
    session_binding,
    visitor_binding,
)

MAX_FORM_FIELDS = 32


class CsrfRejected(Forbidden):
    code = "csrf_failed"


@dataclass(frozen=True, slots=True)
class WebContext:
    """Built once by `install` and kept in `app.state.web`."""

    csrf_key: bytes
    cookies: CookiePolicy
    templates: jinja2.Environment
    asset_version: str
    public_url: str | None


def get_web(request: Request) -> WebContext:
    web: WebContext = request.app.state.web
    return web


WebDep = Annotated[WebContext, Depends(get_web)]

# The request's unit of work, committed before the response is sent (scope "function"),
# so a browser never holds a cookie for a session that is not yet stored.
UnitOfWork = Annotated[Session, Depends(get_writing_session, scope="function")]


def get_signed_in(
    request: Request, runtime: RuntimeDep, web: WebDep, session: UnitOfWork
) -> sessions.SignedIn:
    token = request.cookies.get(web.cookies.session_cookie)
    if not token:
        raise NotAuthenticated("sign in first")
    now = runtime.clock.now()
    user = sessions.resolve(session, token=token, now=now)
    sessions.touch(session, user=user, now=now)
    return user


SignedInDep = Annotated[sessions.SignedIn, Depends(get_signed_in)]


def get_signed_in_briefly(request: Request, runtime: RuntimeDep, web: WebDep) -> sessions.SignedIn:
    """Like `get_signed_in`, on a session of its own, closed before the route runs: for
    async routes that then wait on the writer thread (see `doorstep.deps.require_briefly`)."""
    with runtime.sessions() as session:
        user = get_signed_in(request, runtime, web, session)
        session.commit()
    return user


SignedInBrief = Annotated[sessions.SignedIn, Depends(get_signed_in_briefly)]


def session_csrf(web: WebContext, user: sessions.SignedIn) -> str:
    return csrf_token(web.csrf_key, session_binding(user.digest))


def visitor_csrf(web: WebContext, nonce: str) -> str:
    return csrf_token(web.csrf_key, visitor_binding(nonce))


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (an empty body is an empty form); the
    first value of each field."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("forms must be sent as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("the form could not be read") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def _reject() -> CsrfRejected:
    return CsrfRejected(
        "This form has expired or did not come from this site. "
        "Go back, reload the page and try again."
    )


async def get_session_form(request: Request, web: WebDep, user: SignedInDep) -> dict[str, str]:
    form = await read_form(request)
    if not csrf_valid(web.csrf_key, session_binding(user.digest), form.get(CSRF_FIELD)):
        raise _reject()
    return form


async def get_visitor_form(request: Request, web: WebDep) -> dict[str, str]:
    nonce = request.cookies.get(web.cookies.visitor_cookie)
    form = await read_form(request)
    if not nonce or not csrf_valid(web.csrf_key, visitor_binding(nonce), form.get(CSRF_FIELD)):
        raise _reject()
    return form


async def get_brief_session_form(
    request: Request, web: WebDep, user: SignedInBrief
) -> dict[str, str]:
    form = await read_form(request)
    if not csrf_valid(web.csrf_key, session_binding(user.digest), form.get(CSRF_FIELD)):
        raise _reject()
    return form


SessionForm = Annotated[dict[str, str], Depends(get_session_form)]
BriefSessionForm = Annotated[dict[str, str], Depends(get_brief_session_form)]
VisitorForm = Annotated[dict[str, str], Depends(get_visitor_form)]
