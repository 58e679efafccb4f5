"""Templates, page responses, and how a page shows an error.

Page routes use `PageRoute`: an error from a service (`DoorstepError`) leaves the route
as a `PageError`, after the unit of work has rolled back, and `page_error` answers with
an HTML page of the same status, or with a redirect to the sign-in page when the
session is missing or expired, or to the re-authentication page when a sensitive action
needs a fresh password (`doorstep.web.reauth`). JSON routes keep the app's JSON errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep import db
from doorstep.errors import DATABASE_BUSY, DoorstepError, NotAuthenticated, ServiceUnavailable

SIGN_IN_PATH = "/signin"
NO_STORE = {"cache-control": "no-store"}

_TITLES = {
    403: "Not allowed",
    404: "Not found",
    409: "That did not work",
    413: "Too large",
    422: "Check the form",
    429: "Too many attempts",
    503: "Try again in a moment",
}


class PageError(Exception):
    """A service error raised by a page route, to be shown as a page."""

    def __init__(self, error: DoorstepError) -> None:
        super().__init__(error.message)
        self.error = error


def page_route(as_page_error: Callable[[DoorstepError], Exception]) -> type[APIRoute]:
    """A route class whose service errors are raised again as `as_page_error(error)`, for
    the app's exception handler to show as a page (this app's, or a phone app's)."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def handle_as_page(request: Request) -> Response:
                try:
                    return await handle(request)
                except DoorstepError as exc:
                    raise as_page_error(exc) from exc
                except Exception as exc:  # a busy database is a page too (`db.busy`)
                    if not db.busy(exc):
                        raise
                    raise as_page_error(ServiceUnavailable(DATABASE_BUSY)) from exc

            return handle_as_page

    return PageRoute


PageRoute = page_route(PageError)


def asset_version(directory: Path) -> str:
    """A short hash of a folder of static files, put in their URLs so that browsers fetch
    them again when they change."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("doorstep.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local"] = local_time
    return env


def local_time(value: datetime | None, zone: str = "UTC") -> str:
    """`23 Nov 2025, 14:02` in the given IANA zone."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(zone))
    return f"{local.day} {local:%b %Y, %H:%M}"


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    web = request.app.state.web
    page = web.templates.get_template(template).render(
        {
            "path": request.url.path,
            "asset_version": web.asset_version,
            "user": None,
            "csrf_token": "",
            "live_url": None,
            "stream_url": None,
            "notice": None,
            **context,
        }
    )
    return HTMLResponse(page, status_code=status, headers=NO_STORE)


def to_sign_in(request: Request, notice: str | None = None) -> RedirectResponse:
    """To the sign-in page (with one of its notices), dropping the session cookie."""
    location = f"{SIGN_IN_PATH}?notice={notice}" if notice else SIGN_IN_PATH
    response = RedirectResponse(location, status_code=303, headers=NO_STORE)
    cookies = request.app.state.web.cookies
    cookies.clear(response, cookies.session_cookie)
    return response


async def page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    error = exc.error
    if isinstance(error, NotAuthenticated):
        return to_sign_in(request)
    if error.code == "reauth_required" and isinstance(error.details, dict):
        # `doorstep.web.reauth.ReauthRequired`: confirm the password, then come back.
        return RedirectResponse(error.details["reauth_url"], status_code=303, headers=NO_STORE)
    title = _TITLES.get(error.status, "Something went wrong")
    return render(
        request,
        "error.html",
        {"title": title, "message": _sentence(error.message)},
        status=error.status,
    )


def _sentence(message: str) -> str:
    text = message.strip()
    if not text:
        return "Something went wrong."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."
