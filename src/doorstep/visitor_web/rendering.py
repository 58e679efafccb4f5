"""Guest and provider pages: templates, responses, and how a page shows an error.

The templates are this package's first, then the courier app's and the resident app's
(layout pieces and form macros), with their filters. The rest is the phone apps' shared
rendering (`doorstep.web.phone_pages`): a missing or expired session goes back to the
guest sign-in page; any other service error is a page with its message and status
(another person's grant, entry or provider is "not found"). Pages may ask for the
phone's location (a grant can require being at the home), nothing else.
"""

from __future__ import annotations

from typing import Any

import jinja2

from doorstep.courier_web.rendering import make_templates as courier_templates
from doorstep.visitor_web import sessions
from doorstep.web.phone_pages import PhonePages

SIGN_IN_PATH = "/guest/signin"
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(self)"


def _defaults(state: Any) -> dict[str, Any]:
    return {
        "asset_version": state.web.asset_version,
        "courier_asset_version": state.courier_web.asset_version,
        "visitor_asset_version": state.visitor_web.asset_version,
        "person": None,
        "is_admin": False,
        "csrf_token": "",
        "notice": None,
    }


PAGES = PhonePages(
    state="visitor_web",
    sign_in_path=SIGN_IN_PATH,
    permissions_policy=PERMISSIONS_POLICY,
    error_template="visitor_error.html",
    cookie_name=sessions.SESSION.cookie_name,
    defaults=_defaults,
)
VisitorPageRoute = PAGES.route_class()
render = PAGES.render
to_sign_in = PAGES.to_sign_in


def make_templates() -> jinja2.Environment:
    env = courier_templates()
    assert env.loader is not None
    env.loader = jinja2.ChoiceLoader(
        [jinja2.PackageLoader("doorstep.visitor_web", "templates"), env.loader]
    )
    return env
