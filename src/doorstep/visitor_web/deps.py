"""What the guest and provider routes depend on: the app's context, and the signed-in
guest or worker from the guest cookie (`sessions.SESSION`, a
`doorstep.web.phone_session.PhoneSession`): on pages, on the JSON routes, with the CSRF
header on the JSON routes that change anything, and on forms with their CSRF field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import jinja2
from fastapi import Depends

from doorstep.visitor_web.sessions import SESSION
from doorstep.web.phone_session import SignedIn


@dataclass(frozen=True, slots=True)
class VisitorWebContext:
    """Built once by `install` and kept in `app.state.visitor_web`."""

    templates: jinja2.Environment
    asset_version: str


PagePerson = Annotated[SignedIn, Depends(SESSION.page_person)]
ApiPerson = Annotated[SignedIn, Depends(SESSION.api_person)]
WritingPerson = Annotated[SignedIn, Depends(SESSION.writing_person)]
PersonForm = Annotated[dict[str, str], Depends(SESSION.form)]
