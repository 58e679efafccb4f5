"""A home's delivery preferences and closures: what the entry checks read (DESIGN step 3).

In-home delivery on or off, the weekdays it is allowed, the approval mode (automatic, ask
each time within a time limit, never), notes the courier sees before entering (pets,
where to put the parcel), and closures: vacation, blackout days, and the one-tap
"not today". Days are the home's own calendar days, in its time zone.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.accounts.service import Principal
from doorstep.audit.service import append
from doorstep.db import new_id
from doorstep.deps import Resident, RuntimeDep, SessionDep
from doorstep.errors import InvalidRequest, NotFound
from doorstep.homes.models import ApprovalMode, ClosureKind, Home, HomeClosure
from doorstep.homes.service import owned_home
from doorstep.schemas import Input, Output

router = APIRouter(prefix="/v1", tags=["preferences"])

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_CLOSURE_DAYS = 366


class Preferences(Input):
    in_home_enabled: bool = True
    allowed_weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))
    approval_mode: ApprovalMode = ApprovalMode.AUTO
    approval_timeout_seconds: int = Field(default=120, ge=30, le=900)
    pet_notes: str = Field(default="", max_length=500)
    placement_notes: str = Field(default="", max_length=500)


class ClosureCreate(Input):
    kind: Literal["vacation", "blackout"]
    first_day: date
    last_day: date


class ClosureRead(Output):
    id: str
    kind: str
    first_day: date
    last_day: date


def weekdays_from_mask(mask: int) -> list[Weekday]:
    return [day for bit, day in enumerate(WEEKDAYS) if mask & (1 << bit)]


def mask_from_weekdays(days: list[Weekday]) -> int:
    return sum(1 << WEEKDAYS.index(day) for day in set(days))


def preferences_of(home: Home) -> Preferences:
    return Preferences(
        in_home_enabled=home.in_home_enabled,
        allowed_weekdays=weekdays_from_mask(home.allowed_weekdays),
        approval_mode=ApprovalMode(home.approval_mode),
        approval_timeout_seconds=home.approval_timeout_seconds,
        pet_notes=home.pet_notes,
        placement_notes=home.placement_notes,
    )


@router.get("/homes/{home_id}/preferences", response_model=Preferences)
def get_preferences(home_id: str, session: SessionDep, owner: Resident) -> object:
    return preferences_of(owned_home(session, owner=owner, home_id=home_id))


@router.put("/homes/{home_id}/preferences", response_model=Preferences)
def set_preferences(
    home_id: str, body: Preferences, session: SessionDep, runtime: RuntimeDep, owner: Resident
) -> object:
    """Replace the home's delivery preferences; they apply to the next entry request."""
    home = owned_home(session, owner=owner, home_id=home_id)
    home.in_home_enabled = body.in_home_enabled
    home.allowed_weekdays = mask_from_weekdays(body.allowed_weekdays)
    home.approval_mode = body.approval_mode
    home.approval_timeout_seconds = body.approval_timeout_seconds
    home.pet_notes = body.pet_notes
    home.placement_notes = body.placement_notes
    _audit(session, owner, home, runtime.clock.now(), "preferences:set", body.model_dump())
    return preferences_of(home)


@router.get("/homes/{home_id}/closures", response_model=list[ClosureRead])
def list_closures(home_id: str, session: SessionDep, owner: Resident) -> object:
    home = owned_home(session, owner=owner, home_id=home_id)
    return session.scalars(
        select(HomeClosure).where(HomeClosure.home_id == home.id).order_by(HomeClosure.first_day)
    ).all()


@router.post("/homes/{home_id}/closures", status_code=201, response_model=ClosureRead)
def add_closure(
    home_id: str, body: ClosureCreate, session: SessionDep, runtime: RuntimeDep, owner: Resident
) -> object:
    """Vacation or blackout days, inclusive, in the home's time zone."""
    home = owned_home(session, owner=owner, home_id=home_id)
    if body.last_day < body.first_day:
        raise InvalidRequest("last_day must not be before first_day")
    if (body.last_day - body.first_day).days >= MAX_CLOSURE_DAYS:
        raise InvalidRequest(f"a closure may span at most {MAX_CLOSURE_DAYS} days")
    now = runtime.clock.now()
    if body.last_day < _today(home, now):
        raise InvalidRequest("the closure has already ended")
    return _close(session, owner, home, body.kind, body.first_day, body.last_day, now)


@router.post("/homes/{home_id}/not-today", status_code=201, response_model=ClosureRead)
def not_today(home_id: str, session: SessionDep, runtime: RuntimeDep, owner: Resident) -> object:
    """One tap: no in-home delivery for the rest of today (the home's calendar day)."""
    home = owned_home(session, owner=owner, home_id=home_id)
    now = runtime.clock.now()
    today = _today(home, now)
    return _close(session, owner, home, ClosureKind.NOT_TODAY, today, today, now)


@router.delete("/homes/{home_id}/closures/{closure_id}", status_code=204)
def remove_closure(
    home_id: str, closure_id: str, session: SessionDep, runtime: RuntimeDep, owner: Resident
) -> None:
    home = owned_home(session, owner=owner, home_id=home_id)
    closure = session.get(HomeClosure, closure_id)
    if closure is None or closure.home_id != home.id:
        raise NotFound("no such closure")
    session.delete(closure)
    _audit(session, owner, home, runtime.clock.now(), "closure:removed", {"id": closure_id})


def _close(
    session: Session,
    owner: Principal,
    home: Home,
    kind: str,
    first: date,
    last: date,
    now: datetime,
) -> HomeClosure:
    closure = HomeClosure(
        id=new_id("cls"), home_id=home.id, kind=kind, first_day=first, last_day=last, created_at=now
    )
    session.add(closure)
    session.flush()
    data = {"id": closure.id, "kind": kind, "first_day": str(first), "last_day": str(last)}
    _audit(session, owner, home, now, "closure:added", data)
    return closure


def _today(home: Home, now: datetime) -> date:
    return now.astimezone(ZoneInfo(home.timezone)).date()


def _audit(
    session: Session,
    owner: Principal,
    home: Home,
    now: datetime,
    action: str,
    data: dict[str, Any],
) -> None:
    append(
        session,
        at=now,
        actor=owner.actor,
        action=action,
        subject=home.id,
        home_id=home.id,
        data=data,
    )
