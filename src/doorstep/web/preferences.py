"""The delivery preferences page of a home: in-home delivery on or off, the weekdays it
is allowed, the approval mode and its time limit, the notes couriers see (pets, where to
put the parcel), vacation and blackout days, and the one-tap "not today".

Each form is checked here field by field (so the page can say what to fix where), then
handed to the same functions as `/v1/homes/{id}/preferences`, `/closures` and
`/not-today` (`doorstep.homes.preferences`), which audit the change.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.deps import RuntimeDep
from doorstep.homes import preferences as api
from doorstep.homes import service as homes
from doorstep.homes.models import ClosureKind, Home, HomeClosure
from doorstep.web.deps import SessionForm, SignedInDep, UnitOfWork, WebDep, session_csrf
from doorstep.web.forms import field_errors
from doorstep.web.rendering import NO_STORE, PageRoute, render

DAY_NAMES = dict(
    zip(
        api.WEEKDAYS,
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        strict=True,
    )
)
MODES = (
    ("auto", "Let couriers in", "When every check passes, the door opens."),
    ("ask", "Ask me each time", "You approve or decline each entry; no answer in time is a no."),
    ("never", "Never", "No in-home delivery at all; couriers leave parcels outside."),
)
PREFERENCE_HINTS = {
    "approval_timeout_seconds": "Enter a whole number of seconds between 30 and 900.",
    "pet_notes": "Keep pet notes to 500 characters.",
    "placement_notes": "Keep placement notes to 500 characters.",
    "approval_mode": "Choose one of the approval modes.",
}
CLOSURE_HINTS = {
    "kind": "Choose vacation or blackout.",
    "first_day": "Enter the first day, like 2026-12-24.",
    "last_day": "Enter the last day, like 2026-12-26.",
}
NOTICES = {
    "saved": "Saved. The next courier's request follows these preferences.",
    "closure-added": "Added. No in-home deliveries on those days.",
    "closure-removed": "Removed.",
    "not-today": "No in-home delivery for the rest of today.",
}

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _path(home: Home) -> str:
    return f"/homes/{home.id}/preferences"


def _today(home: Home, now: datetime) -> date:
    return now.astimezone(ZoneInfo(home.timezone)).date()


def _closures(session: Session, home: Home, today: date) -> list[HomeClosure]:
    return list(
        session.scalars(
            select(HomeClosure)
            .where(HomeClosure.home_id == home.id, HomeClosure.last_day >= today)
            .order_by(HomeClosure.first_day, HomeClosure.created_at)
        )
    )


def _page(
    request: Request,
    session: Session,
    user: SignedInDep,
    web: WebDep,
    home: Home,
    now: datetime,
    *,
    shown: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    closure_shown: dict[str, str] | None = None,
    closure_errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    today = _today(home, now)
    closures = _closures(session, home, today)
    context = {
        "title": f"Delivery preferences of {home.name}",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "home": home,
        "prefs": shown or _shown(api.preferences_of(home)),
        "errors": errors or {},
        "closure": closure_shown or {"kind": "vacation", "first_day": "", "last_day": ""},
        "closure_errors": closure_errors or {},
        "closures": closures,
        "not_today": any(
            c.kind == ClosureKind.NOT_TODAY and c.first_day <= today for c in closures
        ),
        "today": today,
        "days": DAY_NAMES,
        "modes": MODES,
        "notice": NOTICES.get(notice or ""),
    }
    return render(request, "preferences.html", context, status=status)


def _shown(prefs: api.Preferences) -> dict[str, Any]:
    return {
        "in_home_enabled": prefs.in_home_enabled,
        "weekdays": set(prefs.allowed_weekdays),
        "approval_mode": str(prefs.approval_mode),
        "approval_timeout_seconds": str(prefs.approval_timeout_seconds),
        "pet_notes": prefs.pet_notes,
        "placement_notes": prefs.placement_notes,
    }


@router.get("/homes/{home_id}/preferences")
def preferences_page(
    home_id: str,
    request: Request,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
    notice: str = "",
) -> HTMLResponse:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    return _page(request, session, user, web, home, runtime.clock.now(), notice=notice)


@router.post("/homes/{home_id}/preferences")
def save_preferences(
    home_id: str,
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
) -> Response:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    shown: dict[str, Any] = {
        "in_home_enabled": form.get("in_home_enabled") == "on",
        "weekdays": {day for day in api.WEEKDAYS if form.get(f"weekday_{day}") == "on"},
        "approval_mode": form.get("approval_mode", ""),
        "approval_timeout_seconds": form.get("approval_timeout_seconds", "").strip(),
        "pet_notes": form.get("pet_notes", ""),
        "placement_notes": form.get("placement_notes", ""),
    }
    try:
        body = api.Preferences.model_validate(
            {
                **{k: v for k, v in shown.items() if k != "weekdays"},
                "allowed_weekdays": [day for day in api.WEEKDAYS if day in shown["weekdays"]],
            }
        )
    except ValidationError as exc:
        errors = field_errors(exc, PREFERENCE_HINTS)
        now = runtime.clock.now()
        return _page(request, session, user, web, home, now, shown=shown, errors=errors, status=422)
    api.set_preferences(
        home_id=home.id, body=body, session=session, runtime=runtime, owner=user.principal
    )
    return _back(home, "saved")


@router.post("/homes/{home_id}/closures")
def add_closure(
    home_id: str,
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
) -> Response:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    now = runtime.clock.now()
    shown = {name: form.get(name, "").strip() for name in ("kind", "first_day", "last_day")}
    errors: dict[str, str] = {}
    try:
        body = api.ClosureCreate.model_validate(shown)
    except ValidationError as exc:
        errors = field_errors(exc, CLOSURE_HINTS)
    else:
        errors = _closure_problems(body, _today(home, now))
    if errors:
        return _page(
            request,
            session,
            user,
            web,
            home,
            now,
            closure_shown=shown,
            closure_errors=errors,
            status=422,
        )
    api.add_closure(
        home_id=home.id, body=body, session=session, runtime=runtime, owner=user.principal
    )
    return _back(home, "closure-added")


def _closure_problems(body: api.ClosureCreate, today: date) -> dict[str, str]:
    if body.last_day < body.first_day:
        return {"last_day": "The last day cannot be before the first day."}
    if (body.last_day - body.first_day).days >= api.MAX_CLOSURE_DAYS:
        return {"last_day": f"A closure can span at most {api.MAX_CLOSURE_DAYS} days."}
    if body.last_day < today:
        return {"last_day": "These days are already over; choose today or later."}
    return {}


@router.post("/homes/{home_id}/closures/{closure_id}/remove")
def remove_closure(
    home_id: str,
    closure_id: str,
    _form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
) -> Response:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    api.remove_closure(
        home_id=home.id,
        closure_id=closure_id,
        session=session,
        runtime=runtime,
        owner=user.principal,
    )
    return _back(home, "closure-removed")


@router.post("/homes/{home_id}/not-today")
def not_today(
    home_id: str, _form: SessionForm, session: UnitOfWork, user: SignedInDep, runtime: RuntimeDep
) -> Response:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    api.not_today(home_id=home.id, session=session, runtime=runtime, owner=user.principal)
    return _back(home, "not-today")


def _back(home: Home, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{_path(home)}?notice={notice}", status_code=303, headers=NO_STORE)
