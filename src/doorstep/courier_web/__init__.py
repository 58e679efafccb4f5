"""The courier's web app, phone first: today's in-home stops with the resident's notes,
the parcel scan (typed, or the browser's barcode reader and camera where there is one),
the knock step, the entry request with the phone's proof of possession, the entry's live
status through to the verified relock, abort, and the outcome with its advice.

`install(app)` mounts, on an app from `doorstep.app.create_app` (after `doorstep.web`,
whose CSRF key, cookie policy and security headers it reuses):

    GET  /courier/signin, POST /courier/signin   start a courier session (rate-limited)
    POST /courier/signout                        end it
    GET  /courier                                today's stops
    GET  /courier/stops/{delivery_id}            one stop: notes, scan, knock, entry
    /courier/api/...                             the page script's JSON (`courier_web.api`)
    GET  /courier/static/...                     phonekey.js, courier.js, courier.css

The phone's key (`static/phonekey.js`, shared with `doorstep.visitor_web`): on first use
after sign-in, the page makes an ECDSA P-256 key with WebCrypto, non-extractable, keeps
the CryptoKey in IndexedDB (database
`doorstep-courier`, store `device-keys`, one record per courier id: `{id, privateKey}`)
and registers the public JWK (`POST /courier/api/device-keys`). On later visits it
checks that the service still knows the key (`GET /courier/api/device-keys`) and makes
and registers a new one if not (a revoked key is never registered again). The private
key never leaves WebCrypto; the page only asks it to sign the hub's challenge.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from doorstep import web
from doorstep.courier_web import api, pages
from doorstep.courier_web.deps import CourierWebContext
from doorstep.courier_web.rendering import make_templates
from doorstep.web.phone_pages import PhonePageError, page_error
from doorstep.web.rendering import asset_version

__all__ = ["STATIC_DIR", "install"]

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the courier app on `app`. Safe to call twice (the second call does nothing)."""
    if getattr(app.state, "courier_web", None) is not None:
        return
    web.install(app)
    app.state.courier_web = CourierWebContext(
        templates=make_templates(), asset_version=asset_version(STATIC_DIR)
    )
    app.include_router(pages.router)
    app.include_router(api.router)
    app.mount("/courier/static", StaticFiles(directory=STATIC_DIR), name="courier-static")
    app.add_exception_handler(PhonePageError, page_error)
