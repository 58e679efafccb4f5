"""A guest's or worker's access as the app shows it: which home and door, when (in the
home's time zone, in words), how many uses are left, the resident's notes, and the open
entry on it (to pick up again after a reload).

Built from `grants.service.grants_of_visitor`, the same list `GET /v1/me/grants`
answers, with what that answer leaves out (the home's name and address, the door's
name). A grant that is not this person's, or no longer in force, is "not found"; so is
a provider's appointment once its worker has been let go or the provider is inactive
(the entry engine refuses them then, `access.visits`): the page would otherwise go on
telling someone who no longer works there the home's address, when it is visited and
the resident's notes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from doorstep.access.models import OPEN_STATES, Entry
from doorstep.accounts.service import Principal
from doorstep.errors import NotFound
from doorstep.grants import service as grants
from doorstep.grants.models import AccessGrant, Provider, ProviderMember, Purpose
from doorstep.grants.schedule import ScheduleKind
from doorstep.homes.models import AccessPoint, Home


@dataclass(frozen=True, slots=True)
class Pass:
    grant_id: str
    service: bool  # a provider's appointment (the person is its worker)
    label: str
    home_name: str
    address: str
    door: str
    timezone: str
    when: str  # the schedule, in words, on the home's wall clock
    uses_left: int | None  # None: no limit
    notes: str
    require_geofence: bool
    provider: str  # the provider's name, for an appointment

    @property
    def title(self) -> str:
        return f"{self.home_name} · {self.door}"


def mine(session: Session, *, person: Principal) -> list[Pass]:
    """The person's grants still in force, newest first."""
    return [_pass(session, grant) for grant in _in_force(session, person)]


def one(session: Session, *, person: Principal, grant_id: str) -> Pass:
    for grant in _in_force(session, person):
        if grant.id == grant_id:
            return _pass(session, grant)
    raise NotFound("no such access")


def _in_force(session: Session, person: Principal) -> list[AccessGrant]:
    """The person's unrevoked grants, less the appointments of a provider they no longer
    work for (or that is inactive)."""
    return [
        grant
        for grant in grants.grants_of_visitor(session, visitor=person)
        if grant.provider_id is None or _works_for(session, person, grant.provider_id)
    ]


def _works_for(session: Session, person: Principal, provider_id: str) -> bool:
    member = session.get(ProviderMember, (provider_id, person.id))
    provider = session.get(Provider, provider_id)
    return bool(member and member.active and provider and provider.active)


def open_entry(session: Session, *, person: Principal, grant_id: str) -> str | None:
    """The person's entry on this grant that has not ended yet, if there is one."""
    return session.scalar(
        select(Entry.id)
        .where(
            Entry.courier_id == person.id,
            Entry.grant_id == grant_id,
            Entry.state.in_([str(state) for state in OPEN_STATES]),
        )
        .order_by(Entry.created_at.desc())
        .limit(1)
    )


def uses_left(session: Session, grant: AccessGrant) -> int | None:
    """Uses left, counted as the entry engine counts them (an entry that unlocked, or one
    still open, is a use)."""
    limit = 1 if grant.kind == ScheduleKind.ONCE else grant.uses_limit
    if limit is None:
        return None
    used = session.scalar(
        select(func.count())
        .select_from(Entry)
        .where(
            Entry.grant_id == grant.id,
            or_(
                Entry.unlocked_at.is_not(None),
                Entry.state.in_([str(state) for state in OPEN_STATES]),
            ),
        )
    )
    return max(limit - (used or 0), 0)


def _pass(session: Session, grant: AccessGrant) -> Pass:
    home = session.get(Home, grant.home_id)
    point = session.get(AccessPoint, grant.access_point_id)
    assert home is not None and point is not None  # foreign keys
    provider = session.get(Provider, grant.provider_id) if grant.provider_id else None
    return Pass(
        grant_id=grant.id,
        service=grant.purpose == Purpose.SERVICE,
        label=grant.label,
        home_name=home.name,
        address=home.address,
        door=point.name,
        timezone=grant.timezone,
        when=grants.describe(grant),
        uses_left=uses_left(session, grant),
        notes=grant.notes,
        require_geofence=grant.require_geofence,
        provider=provider.name if provider is not None else "",
    )
