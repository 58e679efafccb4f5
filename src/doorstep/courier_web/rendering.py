"""Courier pages: templates, responses, and how a page shows an error.

Like the resident pages (`doorstep.web.rendering`), with the courier's own layout; a
missing or expired session goes back to the courier sign-in page. The app pages also
allow this origin the phone's location and camera (for the geofence and the barcode
reader), which the resident pages' Permissions-Policy denies.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import jinja2
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.courier_web import sessions
from doorstep.errors import DoorstepError, NotAuthenticated
from doorstep.web.rendering import NO_STORE, local_time

SIGN_IN_PATH = "/courier/signin"
PERMISSIONS_POLICY = "camera=(self), microphone=(), geolocation=(self)"
_TITLES = {403: "Not allowed", 404: "Not found", 409: "That did not work", 429: "Slow down"}


class CourierPageError(Exception):
    """A service error raised by a courier page route, to be shown as a page."""

    def __init__(self, error: DoorstepError) -> None:
        super().__init__(error.message)
        self.error = error


class CourierPageRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_as_page(request: Request) -> Response:
            try:
                return await handle(request)
            except DoorstepError as exc:
                raise CourierPageError(exc) from exc

        return handle_as_page


def make_templates() -> jinja2.Environment:
    """The courier's templates first, then the resident app's (for the form macros)."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("doorstep.courier_web", "templates"),
                jinja2.PackageLoader("doorstep.web", "templates"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local"] = local_time
    env.filters["clock"] = lambda value, zone="UTC": local_time(value, zone).split(", ")[-1]
    return env


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    web, courier_web = request.app.state.web, request.app.state.courier_web
    page = courier_web.templates.get_template(template).render(
        {
            "path": request.url.path,
            "asset_version": web.asset_version,
            "courier_asset_version": courier_web.asset_version,
            "courier": None,
            "csrf_token": "",
            **context,
        }
    )
    headers = {**NO_STORE, "permissions-policy": PERMISSIONS_POLICY}
    return HTMLResponse(page, status_code=status, headers=headers)


def to_sign_in(request: Request, notice: str | None = None) -> RedirectResponse:
    """To the courier sign-in page (with one of its notices), dropping the session cookie."""
    location = f"{SIGN_IN_PATH}?notice={notice}" if notice else SIGN_IN_PATH
    response = RedirectResponse(location, status_code=303, headers=NO_STORE)
    cookies = request.app.state.web.cookies
    cookies.clear(response, sessions.cookie_name(cookies))
    return response


async def page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CourierPageError)
    error = exc.error
    if isinstance(error, NotAuthenticated):
        return to_sign_in(request)
    message = error.message.strip() or "Something went wrong"
    message = message[0].upper() + message[1:]
    return render(
        request,
        "courier_error.html",
        {
            "title": _TITLES.get(error.status, "Something went wrong"),
            "message": message if message.endswith((".", "!", "?")) else f"{message}.",
        },
        status=error.status,
    )
