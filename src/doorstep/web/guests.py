"""The guests page of a home: who may come in besides couriers, give access, revoke it.

Lists every guest grant and provider appointment of the home (who, which door, when, how,
whether the hub has applied it), with a form to give a guest access (by the app, with an
email invitation, or by a keypad code shown once on the page that made it), a revoke
button per grant, and "revoke everything now", which asks the resident to confirm it is
them first (`web.reauth`). The work is `doorstep.grants.service`'s, as for the API; the
hubs are told once the change has committed (`grants.router.publish_bumped`).

The form offers one weekly window (the API takes up to seven).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.deps import RuntimeDep
from doorstep.errors import DoorstepError
from doorstep.grants import service as grants
from doorstep.grants.router import INVITE_PATH, grant_read, publish_bumped
from doorstep.grants.schemas import GrantCreate
from doorstep.homes import service as homes
from doorstep.homes.models import Home
from doorstep.web.deps import SessionForm, SignedInDep, UnitOfWork, WebDep, session_csrf
from doorstep.web.forms import field_errors
from doorstep.web.reauth import require_recent_auth
from doorstep.web.rendering import NO_STORE, PageRoute, render

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = dict(zip(WEEKDAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True))
KINDS = (
    ("always", "Any time"),
    ("weekly", "Every week, on some days"),
    ("range", "From one date to another"),
    ("once", "Once, within a time span"),
)
HINTS = {
    "label": "Give the guest a name you will recognise (up to 100 characters).",
    "email": "Enter an email address, like ana@example.org.",
    "kind": "Choose when the guest may come in.",
    "starts_at": "Enter a start date and time.",
    "ends_at": "Enter an end date and time.",
    "windows": "Choose at least one day, and times as HH:MM.",
    "pin": "A code is 4 to 8 digits; leave it empty to get one chosen for you.",
    "access_point": "Choose a door.",
}
NOTICES = {
    "revoked": "Revoked. The service refuses it now; the door's hub clears it in a moment.",
    "revoked-everything": "Every guest and appointment of this home is revoked.",
}

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _path(home: Home) -> str:
    return f"/homes/{home.id}/guests"


def _page(
    request: Request, session: Session, user: SignedInDep, web: WebDep, home: Home,
    now: datetime, *, shown: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
    problem: str | None = None, created: dict[str, Any] | None = None,
    notice: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    local = now.astimezone(ZoneInfo(home.timezone))  # the service's clock, at the home
    listed = []
    for grant in grants.list_grants(session, owner=user.principal, home_id=home.id):
        read = grant_read(session, grant)
        listed.append({"grant": grant, "read": read, "when": grants.describe(grant)})
    context = {
        "title": f"Guests of {home.name}",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "home": home,
        "points": homes.access_points(session, home_id=home.id),
        "grants": listed,
        "form": shown
        or {
            "kind": "always",
            "method": "app",
            "days": set(),
            "start": "09:00",
            "end": "17:00",
        },
        "errors": errors or {},
        "problem": problem,
        "created": created,
        "kinds": KINDS,
        "days": DAY_NAMES,
        "today": local.strftime("%Y-%m-%dT%H:%M"),
        "notice": NOTICES.get(notice or ""),
    }
    return render(request, "guests.html", context, status=status)


@router.get("/homes/{home_id}/guests")
def guests_page(
    home_id: str, request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep,
    runtime: RuntimeDep, notice: str = "",
) -> HTMLResponse:  # fmt: skip
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    return _page(request, session, user, web, home, runtime.clock.now(), notice=notice)


@router.post("/homes/{home_id}/guests")
def add_guest(
    home_id: str, request: Request, form: SessionForm, session: UnitOfWork, user: SignedInDep,
    runtime: RuntimeDep, web: WebDep,
) -> Response:  # fmt: skip
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    now = runtime.clock.now()
    shown: dict[str, Any] = {name: form.get(name, "").strip() for name in
             ("label", "email", "access_point", "kind", "method", "starts_at", "ends_at", "pin",
              "start", "end")}  # fmt: skip
    shown["days"] = {day for day in WEEKDAYS if form.get(f"day_{day}") == "on"}
    body = _body(shown)
    try:
        parsed = GrantCreate.model_validate(body)
    except ValidationError as exc:
        errors = field_errors(exc, HINTS)
        return _page(request, session, user, web, home, now, shown=shown, errors=errors,
                     status=422)  # fmt: skip
    spec = grants.GrantSpec(
        access_point=parsed.access_point, label=parsed.label, kind=parsed.kind,
        method=parsed.method, email=parsed.email, starts_at=parsed.starts_at,
        ends_at=parsed.ends_at, windows=tuple(w.model_dump() for w in parsed.windows),
        pin=parsed.pin,
    )  # fmt: skip
    base = runtime.settings.public_url or str(request.base_url)
    try:
        made = grants.create_grant(
            session, owner=user.principal, home_id=home.id, spec=spec, now=now,
            invite_url=base.rstrip("/") + INVITE_PATH,
        )  # fmt: skip
    except DoorstepError as exc:
        session.rollback()
        return _page(request, session, user, web, home, now, shown=shown, problem=str(exc),
                     status=exc.status)  # fmt: skip
    publish_bumped(runtime, session)
    created = {"label": made.grant.label, "pin": made.pin, "email": parsed.email}
    return _page(request, session, user, web, home, now, created=created, status=201)


def _body(shown: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "label": shown["label"],
        "access_point": shown["access_point"],
        "kind": shown["kind"],
        "method": shown["method"] or "app",
        "email": shown["email"] or None,
        "pin": shown["pin"] or None,
    }
    if shown["kind"] in ("range", "once"):
        body["starts_at"] = shown["starts_at"] or None
        body["ends_at"] = shown["ends_at"] or None
    if shown["kind"] == "weekly":
        body["windows"] = [{"days": sorted(shown["days"], key=WEEKDAYS.index),
                            "start": shown["start"], "end": shown["end"]}]  # fmt: skip
    return body


@router.post("/homes/{home_id}/guests/{grant_id}/revoke")
def revoke_guest(
    home_id: str, grant_id: str, _form: SessionForm, session: UnitOfWork, user: SignedInDep,
    runtime: RuntimeDep,
) -> Response:  # fmt: skip
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    grant = grants.owned_grant(session, owner=user.principal, grant_id=grant_id)
    if grant.home_id != home.id:
        return RedirectResponse(_path(home), status_code=303, headers=NO_STORE)
    grants.revoke(session, grant, actor=user.principal.actor, now=runtime.clock.now())
    publish_bumped(runtime, session)
    return RedirectResponse(f"{_path(home)}?notice=revoked", status_code=303, headers=NO_STORE)


@router.post("/homes/{home_id}/guests/revoke-everything")
def revoke_everything(
    home_id: str,
    request: Request,
    _form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
) -> Response:
    """Every grant and appointment of the home, at once; the resident confirms it is them
    first (a recent password re-entry on this session). Someone else's home is not found
    before anything is asked."""
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    require_recent_auth(request, runtime, session, user)
    grants.revoke_everything(
        session, owner=user.principal, home_id=home.id, now=runtime.clock.now()
    )
    publish_bumped(runtime, session)
    return RedirectResponse(
        f"{_path(home)}?notice=revoked-everything", status_code=303, headers=NO_STORE
    )
