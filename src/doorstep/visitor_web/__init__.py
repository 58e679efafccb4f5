"""The guest and service-provider web app, phone first: accepting an invitation, a
guest's or worker's access (home, door, schedule in the home's time zone, uses left,
notes) with "Open the door" (the phone's key, the visit, the door's challenge signed,
live status to the verified relock, the denial's advice), and the provider portal
(workers and appointments) for a provider's admins.

`install(app)` mounts, on an app from `doorstep.app.create_app` (after
`doorstep.courier_web`, whose phone-key script, entry schema and long-poll it shares,
and `doorstep.web`, whose CSRF key, cookie policy and security headers it reuses; the
cookie session is a `doorstep.web.phone_session.PhoneSession` like the courier app's):

    GET  /guest/accept, POST       accept an invitation (the token is in the link's
                                   fragment; the page's script posts it), then signed in
    GET  /guest/signin, POST       start a guest/worker session (rate-limited)
    POST /guest/signout            end it
    GET  /guest                    the person's access: grants, and a worker's
                                   appointments (their grants)
    GET  /guest/grants/{grant_id}  one of them, with "Open the door"
    /guest/api/...                 the page script's JSON (`visitor_web.api`)
    /provider/...                  the provider portal (`visitor_web.portal`)
    GET  /guest/static/...         guest.js, guest.css

The phone's key (`courier_web/static/phonekey.js`): an ECDSA P-256 WebCrypto key,
non-extractable, kept in IndexedDB (database `doorstep-visitor`, store `device-keys`,
one record per person id), its public JWK registered through `/guest/api/device-keys`;
it only ever signs the door's challenge.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from doorstep import courier_web
from doorstep.visitor_web import api, pages, portal
from doorstep.visitor_web.deps import VisitorWebContext
from doorstep.visitor_web.rendering import make_templates
from doorstep.web.phone_pages import PhonePageError, page_error
from doorstep.web.rendering import asset_version

__all__ = ["STATIC_DIR", "install"]

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the guest and provider app on `app`. Safe to call twice."""
    if getattr(app.state, "visitor_web", None) is not None:
        return
    courier_web.install(app)
    app.state.visitor_web = VisitorWebContext(
        templates=make_templates(), asset_version=asset_version(STATIC_DIR)
    )
    app.include_router(pages.router)
    app.include_router(portal.router)
    app.include_router(api.router)
    app.mount("/guest/static", StaticFiles(directory=STATIC_DIR), name="guest-static")
    app.add_exception_handler(PhonePageError, page_error)
