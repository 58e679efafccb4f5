"""Home pages: the list, adding a home (with its first door), a home's status, the entries
waiting for the resident's answer and recent activity (all live), hub setup (a one-time
claim code and the hub's state as it comes online), and the full activity timeline.

Every page loads the home through `homes.service.owned_home`, so another resident's home
is "not found" here exactly as in the API.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cache
from zoneinfo import available_timezones

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.deps import RuntimeDep
from doorstep.errors import Conflict
from doorstep.homes import service as homes
from doorstep.homes.models import Home, Hub
from doorstep.homes.schemas import HomeCreate
from doorstep.web.approvals import ANSWERS, awaiting
from doorstep.web.deps import SessionForm, SignedInDep, UnitOfWork, WebDep, session_csrf
from doorstep.web.forms import field_errors, values
from doorstep.web.live import RECENT_ENTRIES
from doorstep.web.rendering import NO_STORE, PageRoute, render
from doorstep.web.status import home_status, hub_item
from doorstep.web.timeline import timeline

TIMELINE_LIMIT = 100
HUB_DATA_DIR = "hub-data"
HOME_FIELDS = ("name", "address", "latitude", "longitude", "timezone", "door")
HOME_HINTS = {
    "name": "Give the home a name, like “Flat 3” (up to 200 characters).",
    "address": "Enter the street address couriers come to.",
    "latitude": "Enter the latitude in degrees, between -90 and 90, like 51.5007.",
    "longitude": "Enter the longitude in degrees, between -180 and 180, like -0.1246.",
    "timezone": "Choose the home's time zone.",
    "door": "Name the door couriers use, like “Front door” (up to 200 characters).",
}

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@cache
def time_zones() -> list[str]:
    return sorted(available_timezones())


def door_slug(name: str) -> str:
    """`Front door` -> `front-door`: lowercase letters, digits and dashes, at most 32."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "door"


@router.get("/homes")
def list_homes(
    request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep
) -> HTMLResponse:
    owned = homes.list_homes(session, owner=user.principal)
    rows = [(home, hub_item(_first_hub(session, home.id))) for home in owned]
    return render(
        request,
        "homes.html",
        {
            "title": "Your homes",
            "user": user.user,
            "csrf_token": session_csrf(web, user),
            "rows": rows,
        },
    )


@router.get("/homes/new")
def new_home_form(request: Request, user: SignedInDep, web: WebDep) -> HTMLResponse:
    return _new_home_page(request, user, web, {"door": "Front door"}, {})


def _new_home_page(
    request: Request,
    user: SignedInDep,
    web: WebDep,
    shown: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> HTMLResponse:
    context = {
        "title": "Add a home",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "values": shown,
        "errors": errors,
        "zones": time_zones(),
    }
    return render(request, "home_new.html", context, status=status)


@router.post("/homes")
def add_home(
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
) -> Response:
    shown = values(form, *HOME_FIELDS)
    door = shown["door"].strip()
    errors = {} if 0 < len(door) <= 200 else {"door": HOME_HINTS["door"]}
    try:
        body = HomeCreate.model_validate({k: v for k, v in shown.items() if k != "door"})
    except ValidationError as exc:
        errors = {**field_errors(exc, HOME_HINTS), **errors}
    if errors:
        return _new_home_page(request, user, web, shown, errors, 422)
    now = runtime.clock.now()
    home = homes.create_home(
        session, owner=user.principal, data=homes.NewHome(**body.model_dump()), now=now
    )
    homes.add_access_point(
        session, owner=user.principal, home_id=home.id, slug=door_slug(door), name=door, now=now
    )
    return RedirectResponse(f"/homes/{home.id}/hub", status_code=303, headers=NO_STORE)


@router.get("/homes/{home_id}")
def home_page(
    home_id: str,
    request: Request,
    session: UnitOfWork,
    user: SignedInDep,
    web: WebDep,
    answered: str = "",
) -> HTMLResponse:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    context = {
        "title": home.name,
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "home": home,
        "hub": _first_hub(session, home.id),
        "status": home_status(session, home=home),
        "entries": timeline(session, home=home, limit=RECENT_ENTRIES),
        "approvals": awaiting(session, owner=user.principal, home_id=home.id),
        "notice": ANSWERS.get(answered),
        "live_url": f"/homes/{home.id}/live",
        "stream_url": f"/homes/{home.id}/stream",
    }
    return render(request, "home.html", context)


@router.get("/homes/{home_id}/hub")
def hub_page(
    home_id: str, request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep
) -> HTMLResponse:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    return _hub_page(request, user, web, home, _first_hub(session, home.id), claim=None)


@router.post("/homes/{home_id}/hub")
def create_hub(
    home_id: str,
    request: Request,
    _form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
) -> HTMLResponse:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    if _first_hub(session, home.id) is not None:
        raise Conflict("this home already has a hub; its state is on the hub page")
    claim = homes.create_hub(
        session,
        owner=user.principal,
        home_id=home.id,
        now=runtime.clock.now(),
        claim_ttl=timedelta(seconds=runtime.settings.auth.claim_code_ttl_seconds),
    )
    return _hub_page(request, user, web, home, claim.hub, claim=claim.claim_code, status=201)


def _hub_page(
    request: Request,
    user: SignedInDep,
    web: WebDep,
    home: Home,
    hub: Hub | None,
    *,
    claim: str | None,
    status: int = 200,
) -> HTMLResponse:
    base = (web.public_url or str(request.base_url)).rstrip("/")
    # One option a line (shell continuations), so it reads and copies on a phone. The code
    # goes in the environment, where other users of the hub cannot read it (`ps` shows
    # arguments).
    command = (
        f"DOORSTEP_HUB_CLAIM_CODE={claim} \\\n  doorstep hub \\\n"
        f"  --data-dir {HUB_DATA_DIR} \\\n  --service {base}"
        if claim
        else None
    )
    context = {
        "title": f"Hub of {home.name}",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "home": home,
        "hub": hub,
        "hub_status": hub_item(hub),
        "claim_code": claim,
        "command": command,
        "live_url": f"/homes/{home.id}/live",
        "stream_url": f"/homes/{home.id}/stream",
    }
    return render(request, "hub.html", context, status=status)


@router.get("/homes/{home_id}/activity")
def activity(
    home_id: str, request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep
) -> HTMLResponse:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    context = {
        "title": f"Activity at {home.name}",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "home": home,
        "entries": timeline(session, home=home, limit=TIMELINE_LIMIT),
        "limit": TIMELINE_LIMIT,
    }
    return render(request, "activity.html", context)


def _first_hub(session: Session, home_id: str) -> Hub | None:
    hubs = homes.hubs_of(session, home_id=home_id)
    return hubs[0] if hubs else None
