"""The resident's web app: server-rendered pages (Jinja2), one hand-written CSS and one JS
file, served by the access service itself.

`install(app)` mounts, on an app from `doorstep.app.create_app`:

    GET  /                          -> /homes
    GET  /signup, POST /signup      create a resident account
    GET  /signin, POST /signin      start a session (rate-limited)
    GET  /signin/code, POST         the second factor, when two-step sign-in is on
    POST /signout                   end this session
    GET  /homes                     the resident's homes
    GET  /homes/new, POST /homes    add a home and its first door
    GET  /homes/{home_id}           status, approvals and recent activity (all live)
    GET  /homes/{home_id}/hub       hub state (live); POST creates the hub's claim code
    GET  /homes/{home_id}/activity  every entry with who, how, when, outcome, flags, audit
    GET  /homes/{home_id}/preferences, POST      delivery preferences
    GET  /homes/{home_id}/guests, POST           guests: give access (app or keypad code),
    POST /homes/{home_id}/guests/{id}/revoke     revoke one, or everything (after a
    POST /homes/{home_id}/guests/revoke-everything   password re-entry)
    GET  /homes/{home_id}/unlock                 unlock a door from afar (after a
    POST /homes/{home_id}/doors/{slug}/unlock    password re-entry)
    POST /homes/{home_id}/doors/{slug}/lock      "Lock now" (no password: the safe way)
    POST /homes/{home_id}/closures, .../closures/{closure_id}/remove, .../not-today
    GET  /homes/{home_id}/stream    Server-Sent Events: "something changed" (live.py)
    GET  /homes/{home_id}/live      JSON snapshot the live parts read on each change
    GET  /approvals                 entries awaiting the resident's answer (live)
    GET  /approvals/stream, /approvals/live
    POST /entries/{entry_id}/approval            approve or decline
    GET  /account/security          password, two-step sign-in, active sessions
    GET  /account/password, POST    change the password (`doorstep.web.passwords`)
    GET  /password/forgot, POST     "Forgot your password?": a link by email
    GET  /password/reset, POST      choose a new password with that link
    POST /account/sessions/end      end one session
    POST /account/signout-everywhere             (needs a recent re-authentication)
    POST /account/totp/setup, /confirm, /disable (setup and disable need one too;
                                    confirming ends the account's other sessions)
    GET  /account/reauth, POST      re-enter the password (`doorstep.web.reauth`)
    GET  /account/passkeys, POST /account/passkeys/new, POST /account/passkeys,
    POST /account/passkeys/remove   the resident's passkeys (`doorstep.web.passkeys`)
    POST /signin/passkey, /signin/passkey/finish     sign in with a passkey
    GET  /account/notifications, POST            which emails to get
    GET  /account/history           the account's sign-ins and changes (`doorstep.web.history`)
    GET  /static/...                app.css, app.js, passkeys.js, favicon.svg

and a middleware adding the security headers to every response outside the JSON API
(`/v1/...`) and the API docs. Sessions, CSRF and cookies: `doorstep.web.security` and
`doorstep.web.sessions`. Data comes from the domain services only; every home is
loaded through `homes.service.owned_home`, so another resident's home is "not found".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from doorstep.deps import Runtime
from doorstep.web import (
    account,
    account_security,
    approvals,
    guests,
    history,
    homes,
    live,
    notifications,
    passkeys,
    passwords,
    preferences,
    reauth,
    remote,
    video,
)
from doorstep.web.deps import WebContext
from doorstep.web.rendering import PageError, asset_version, make_templates, page_error
from doorstep.web.security import (
    CookiePolicy,
    SecurityHeaders,
    load_or_create_key,
    security_headers,
)

__all__ = ["STATIC_DIR", "install"]

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the web app on `app`. Safe to call twice (the second call does nothing)."""
    if getattr(app.state, "web", None) is not None:
        return
    runtime: Runtime = app.state.runtime
    settings = runtime.settings
    https = settings.resolved_public_url.startswith("https://")
    templates = make_templates()
    # The sign-in page offers passkeys only where they can work (`accounts.passkeys`).
    templates.globals["passkeys_on"] = settings.resolved_passkey_rp_id is not None
    app.state.web = WebContext(
        csrf_key=load_or_create_key(settings.data_dir / "keys"),
        cookies=CookiePolicy(secure=https),
        templates=templates,
        asset_version=asset_version(STATIC_DIR),
        public_url=settings.public_url,
    )
    for router in (
        account.router,
        account_security.router,
        history.router,
        passwords.router,
        reauth.router,
        passkeys.router,
        homes.router,
        preferences.router,
        guests.router,
        remote.router,
        approvals.router,
        notifications.router,
        live.router,
        video.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="web-static")
    app.add_exception_handler(PageError, page_error)
    app.add_middleware(SecurityHeaders, headers=security_headers(https=https), exempt=_api(app))


def _api(app: FastAPI) -> Callable[[str], bool]:
    """Paths the web's headers stay off: the JSON API, and the API docs (whose pages load
    scripts the web's policy would block)."""
    docs = {
        path
        for path in (
            app.docs_url,
            app.redoc_url,
            app.openapi_url,
            app.swagger_ui_oauth2_redirect_url,
        )
        if path
    }
    return lambda path: path.startswith("/v1/") or path in docs
