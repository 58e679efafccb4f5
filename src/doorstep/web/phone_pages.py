"""Pages of a phone app with a cookie session of its own: the courier app
(`doorstep.courier_web`) and the guest and provider app (`doorstep.visitor_web`).

Each app makes one `PhonePages`: where its sign-in page is, what its Permissions-Policy
allows, which template shows an error, its session cookie's name, and the context every
template gets. From it come the app's route class (a service error raised by a page
route becomes `PhonePageError`), `render`, and `to_sign_in`. `page_error`, registered
once for `PhonePageError`, sends a missing or expired session back to that app's sign-in
page (dropping the cookie) and shows any other error as a page with its message and
status. The resident app keeps its own rendering (`doorstep.web.rendering`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.errors import DoorstepError, NotAuthenticated
from doorstep.web.rendering import NO_STORE, page_route
from doorstep.web.security import CookiePolicy

_TITLES = {403: "Not allowed", 404: "Not found", 409: "That did not work", 429: "Slow down"}


class PhonePageError(Exception):
    """A service error raised by a phone app's page route, to be shown as a page."""

    def __init__(self, error: DoorstepError, pages: PhonePages) -> None:
        super().__init__(error.message)
        self.error = error
        self.pages = pages


@dataclass(frozen=True)
class PhonePages:
    state: str  # the `app.state` attribute that holds the app's `templates`
    sign_in_path: str
    permissions_policy: str
    error_template: str
    cookie_name: Callable[[CookiePolicy], str]
    defaults: Callable[[Any], dict[str, Any]]  # app.state -> what every template gets

    def route_class(self) -> type[APIRoute]:
        return page_route(lambda error: PhonePageError(error, self))

    def render(
        self, request: Request, template: str, context: dict[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        state = request.app.state
        templates = getattr(state, self.state).templates
        page = templates.get_template(template).render(
            {"path": request.url.path, **self.defaults(state), **context}
        )
        headers = {**NO_STORE, "permissions-policy": self.permissions_policy}
        return HTMLResponse(page, status_code=status, headers=headers)

    def to_sign_in(self, request: Request, notice: str | None = None) -> RedirectResponse:
        """To the sign-in page (with one of its notices), dropping the session cookie."""
        location = f"{self.sign_in_path}?notice={notice}" if notice else self.sign_in_path
        response = RedirectResponse(location, status_code=303, headers=NO_STORE)
        cookies = request.app.state.web.cookies
        cookies.clear(response, self.cookie_name(cookies))
        return response

    def error_page(self, request: Request, error: DoorstepError) -> Response:
        if isinstance(error, NotAuthenticated):
            return self.to_sign_in(request)
        message = error.message.strip() or "Something went wrong"
        message = message[0].upper() + message[1:]
        return self.render(
            request,
            self.error_template,
            {
                "title": _TITLES.get(error.status, "Something went wrong"),
                "message": message if message.endswith((".", "!", "?")) else f"{message}.",
            },
            status=error.status,
        )


async def page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PhonePageError)
    return exc.pages.error_page(request, exc.error)
