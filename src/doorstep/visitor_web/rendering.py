"""Guest and provider pages: templates, responses, and how a page shows an error.

The templates are this package's first, then the courier app's and the resident app's
(layout pieces and form macros), with their filters. A missing or expired session goes
back to the guest sign-in page; any other service error is a page with its message and
status (another person's grant, entry or provider is "not found"). Pages may ask for the
phone's location (a grant can require being at the home), nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import jinja2
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.courier_web.rendering import make_templates as courier_templates
from doorstep.errors import DoorstepError, NotAuthenticated
from doorstep.visitor_web import sessions
from doorstep.web.rendering import NO_STORE

SIGN_IN_PATH = "/guest/signin"
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(self)"
_TITLES = {403: "Not allowed", 404: "Not found", 409: "That did not work", 429: "Slow down"}


class VisitorPageError(Exception):
    """A service error raised by a guest or provider page route, to be shown as a page."""

    def __init__(self, error: DoorstepError) -> None:
        super().__init__(error.message)
        self.error = error


class VisitorPageRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_as_page(request: Request) -> Response:
            try:
                return await handle(request)
            except DoorstepError as exc:
                raise VisitorPageError(exc) from exc

        return handle_as_page


def make_templates() -> jinja2.Environment:
    env = courier_templates()
    assert env.loader is not None
    env.loader = jinja2.ChoiceLoader(
        [jinja2.PackageLoader("doorstep.visitor_web", "templates"), env.loader]
    )
    return env


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    state = request.app.state
    page = state.visitor_web.templates.get_template(template).render(
        {
            "path": request.url.path,
            "asset_version": state.web.asset_version,
            "courier_asset_version": state.courier_web.asset_version,
            "visitor_asset_version": state.visitor_web.asset_version,
            "person": None,
            "is_admin": False,
            "csrf_token": "",
            "notice": None,
            **context,
        }
    )
    headers = {**NO_STORE, "permissions-policy": PERMISSIONS_POLICY}
    return HTMLResponse(page, status_code=status, headers=headers)


def to_sign_in(request: Request, notice: str | None = None) -> RedirectResponse:
    """To the guest sign-in page (with one of its notices), dropping the session cookie."""
    location = f"{SIGN_IN_PATH}?notice={notice}" if notice else SIGN_IN_PATH
    response = RedirectResponse(location, status_code=303, headers=NO_STORE)
    cookies = request.app.state.web.cookies
    cookies.clear(response, sessions.cookie_name(cookies))
    return response


async def page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VisitorPageError)
    error = exc.error
    if isinstance(error, NotAuthenticated):
        return to_sign_in(request)
    message = error.message.strip() or "Something went wrong"
    message = message[0].upper() + message[1:]
    return render(
        request,
        "visitor_error.html",
        {
            "title": _TITLES.get(error.status, "Something went wrong"),
            "message": message if message.endswith((".", "!", "?")) else f"{message}.",
        },
        status=error.status,
    )
