"""Courier pages: templates, responses, and how a page shows an error.

Like the resident pages (`doorstep.web.rendering`), with the courier's own layout; the
rest is the phone apps' shared rendering (`doorstep.web.phone_pages`): a missing or
expired session goes back to the courier sign-in page, any other service error is a
page. The app pages also allow this origin the phone's location and camera (for the
geofence and the barcode reader), which the resident pages' Permissions-Policy denies.
"""

from __future__ import annotations

from typing import Any

import jinja2

from doorstep.courier_web import sessions
from doorstep.web.phone_pages import PhonePages
from doorstep.web.rendering import local_time

SIGN_IN_PATH = "/courier/signin"
PERMISSIONS_POLICY = "camera=(self), microphone=(), geolocation=(self)"


def _defaults(state: Any) -> dict[str, Any]:
    return {
        "asset_version": state.web.asset_version,
        "courier_asset_version": state.courier_web.asset_version,
        "courier": None,
        "csrf_token": "",
    }


PAGES = PhonePages(
    state="courier_web",
    sign_in_path=SIGN_IN_PATH,
    permissions_policy=PERMISSIONS_POLICY,
    error_template="courier_error.html",
    cookie_name=sessions.SESSION.cookie_name,
    defaults=_defaults,
)
CourierPageRoute = PAGES.route_class()
render = PAGES.render
to_sign_in = PAGES.to_sign_in


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
