"""What the courier routes depend on: the courier app's context, and the signed-in courier
from the courier cookie (`sessions.SESSION`, a `doorstep.web.phone_session.PhoneSession`):
on pages, on the JSON routes, with the CSRF header on the JSON routes that change
anything, and on forms with their CSRF field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import jinja2
from fastapi import Depends

from doorstep.courier_web.sessions import SESSION
from doorstep.web.phone_session import SignedIn


@dataclass(frozen=True, slots=True)
class CourierWebContext:
    """Built once by `install` and kept in `app.state.courier_web`."""

    templates: jinja2.Environment
    asset_version: str


PageCourier = Annotated[SignedIn, Depends(SESSION.page_person)]
ApiCourier = Annotated[SignedIn, Depends(SESSION.api_person)]
WritingCourier = Annotated[SignedIn, Depends(SESSION.writing_person)]
CourierForm = Annotated[dict[str, str], Depends(SESSION.form)]
