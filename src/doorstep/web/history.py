"""The account history page: the signed-in resident's own security log (sign-ins and
refused attempts, password and two-step sign-in changes, ended sessions), newest first,
`accounts.history.PAGE_SIZE` a page, "Older" following `?before=<record>`. Times in UTC,
as on the account security page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from doorstep.accounts import history
from doorstep.errors import InvalidRequest
from doorstep.web.deps import SignedInDep, UnitOfWork, WebDep, session_csrf
from doorstep.web.rendering import PageRoute, render

PATH = "/account/history"

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get(PATH)
def history_page(
    request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep, before: str = ""
) -> HTMLResponse:
    page = history.history(session, user_id=user.user.id, before=_record(before))
    context = {
        "title": "Account history",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "items": page.items,
        "older": page.older,
        "paged": bool(before),
    }
    return render(request, "history.html", context)


def _record(before: str) -> int | None:
    """`?before=` as a record number; anything else is a 422 page, not a JSON error."""
    if not before:
        return None
    if not before.isascii() or not before.isdigit() or len(before) > 18 or int(before) < 1:
        raise InvalidRequest("that page of the history does not exist")
    return int(before)
