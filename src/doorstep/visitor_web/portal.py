"""The provider portal, for a provider's admins: its workers (invite by email,
deactivate after a confirmation) and its appointments (home, door, window, notes, the
assigned worker) with "assign".

    GET  /provider                                   -> the admin's provider
    GET  /provider/{provider_id}                     workers and appointments
    POST /provider/{provider_id}/workers             invite a worker (email, name)
    GET  /provider/{provider_id}/workers/{user_id}/deactivate    "are you sure?"
    POST /provider/{provider_id}/workers/{user_id}/deactivate    deactivate, at once
    POST /provider/appointments/{appointment_id}/assign          assign a worker

Every action is the bearer API's own function (`grants.providers`), which checks that
the person is an active admin of this provider: to anyone else (a worker, another
provider's admin, a guest) every route here is "not found". Workers see their
appointments on `/guest`, where they are their grants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.deps import RuntimeDep
from doorstep.errors import Conflict, InvalidRequest, NotFound
from doorstep.grants import providers
from doorstep.grants.models import AccessGrant, MemberRole, Provider, ProviderMember
from doorstep.grants.router import INVITE_PATH, publish_bumped
from doorstep.grants.schemas import MemberRead, WorkerInvite
from doorstep.grants.service import describe
from doorstep.homes.models import AccessPoint, Home
from doorstep.visitor_web.deps import PagePerson, PersonForm
from doorstep.visitor_web.pages import person_context
from doorstep.visitor_web.rendering import VisitorPageRoute, render
from doorstep.web.deps import UnitOfWork, WebDep
from doorstep.web.forms import field_errors, values
from doorstep.web.phone_session import SignedIn
from doorstep.web.rendering import NO_STORE

NOTICES = {
    "invited": "Invitation sent. The worker chooses a password from the link in the email.",
    "deactivated": "Worker deactivated. They can no longer open any door for you.",
    "assigned": "Worker assigned. The appointment is on their list now.",
}
INVITE_HINTS = {"email": "Enter the worker's email address.", "name": "Enter their name."}

router = APIRouter(route_class=VisitorPageRoute, include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Appointment:
    id: str
    label: str
    home_name: str
    address: str
    door: str
    when: str  # on the home's wall clock
    timezone: str
    notes: str
    worker_id: str | None
    worker_name: str
    cancelled: bool


def _admin_of(session: Session, person: SignedIn, provider_id: str) -> list[MemberRead]:
    """The provider's people, for its admin only (else "not found")."""
    people = providers.list_workers(provider_id, session, person.principal)
    assert isinstance(people, list)  # the route answers MemberRead rows
    return people


def _appointments(
    session: Session, person: SignedIn, provider_id: str, people: list[MemberRead]
) -> list[Appointment]:
    names = {member.user_id: member.name for member in people}
    found = providers.appointments_of(session, person=person.principal, provider_id=provider_id)
    return [_appointment(session, grant, names) for grant in found]


def _appointment(session: Session, grant: AccessGrant, names: dict[str, str]) -> Appointment:
    home = session.get(Home, grant.home_id)
    point = session.get(AccessPoint, grant.access_point_id)
    assert home is not None and point is not None  # foreign keys
    worker = grant.grantee_id
    return Appointment(
        id=grant.id, label=grant.label, home_name=home.name, address=home.address,
        door=point.name, when=describe(grant), timezone=grant.timezone, notes=grant.notes,
        worker_id=worker, worker_name=names.get(worker, "") if worker else "",
        cancelled=grant.revoked_at is not None,
    )  # fmt: skip


def _portal(
    request: Request, session: Session, web: Any, person: SignedIn, provider_id: str,
    extra: dict[str, Any], status: int = 200,
) -> HTMLResponse:  # fmt: skip
    people = _admin_of(session, person, provider_id)
    provider = session.get(Provider, provider_id)
    assert provider is not None  # an admin's provider
    context = {
        **person_context(session, web, person),
        "title": provider.name,
        "provider": provider,
        "workers": [m for m in people if m.role == MemberRole.WORKER],
        "assignable": [m for m in people if m.active],
        "appointments": _appointments(session, person, provider_id, people),
        "values": {},
        "errors": {},
        **extra,
    }
    return render(request, "provider_portal.html", context, status=status)


def _back(provider_id: str, notice: str) -> RedirectResponse:
    return RedirectResponse(
        f"/provider/{provider_id}?notice={notice}", status_code=303, headers=NO_STORE
    )


@router.get("/provider")
def portal_home(session: UnitOfWork, person: PagePerson) -> Response:
    provider_id = session.scalar(
        select(ProviderMember.provider_id)
        .where(
            ProviderMember.user_id == person.principal.id,
            ProviderMember.role == MemberRole.ADMIN,
            ProviderMember.active.is_(True),
        )
        .order_by(ProviderMember.created_at)
        .limit(1)
    )
    if provider_id is None:
        raise NotFound("no such provider")
    return RedirectResponse(f"/provider/{provider_id}", status_code=303, headers=NO_STORE)


@router.get("/provider/{provider_id}")
def portal(
    provider_id: str, request: Request, session: UnitOfWork, person: PagePerson, web: WebDep,
    notice: str = "",
) -> HTMLResponse:  # fmt: skip
    return _portal(request, session, web, person, provider_id, {"notice": NOTICES.get(notice)})


@router.post("/provider/{provider_id}/workers")
def invite(
    provider_id: str, request: Request, form: PersonForm, session: UnitOfWork,
    runtime: RuntimeDep, person: PagePerson, web: WebDep,
) -> Response:  # fmt: skip
    _admin_of(session, person, provider_id)
    shown = {"values": values(form, "email", "name")}
    base = runtime.settings.public_url or str(request.base_url)
    try:
        body = WorkerInvite(email=form.get("email", ""), name=form.get("name", ""))
        providers.invite_worker(
            session, admin=person.principal, provider_id=provider_id, body=body,
            now=runtime.clock.now(), invite_url=base.rstrip("/") + INVITE_PATH,
        )  # fmt: skip
    except ValidationError as exc:
        errors = field_errors(exc, INVITE_HINTS)
        return _portal(request, session, web, person, provider_id, {**shown, "errors": errors}, 422)
    except Conflict as exc:
        errors = {"email": f"{exc.message.capitalize()}."}
        return _portal(request, session, web, person, provider_id, {**shown, "errors": errors}, 409)
    return _back(provider_id, "invited")


def _worker(session: Session, person: SignedIn, provider_id: str, worker_id: str) -> MemberRead:
    for member in _admin_of(session, person, provider_id):
        if member.user_id == worker_id and member.role == MemberRole.WORKER:
            return member
    raise NotFound("no such worker")


@router.get("/provider/{provider_id}/workers/{worker_id}/deactivate")
def confirm_deactivate(
    provider_id: str, worker_id: str, request: Request, session: UnitOfWork, person: PagePerson,
    web: WebDep,
) -> HTMLResponse:  # fmt: skip
    worker = _worker(session, person, provider_id, worker_id)
    provider = session.get(Provider, provider_id)
    context = {**person_context(session, web, person), "title": f"Deactivate {worker.name}?",
               "worker": worker, "provider": provider}  # fmt: skip
    return render(request, "provider_deactivate.html", context)


@router.post("/provider/{provider_id}/workers/{worker_id}/deactivate")
def deactivate(
    provider_id: str, worker_id: str, _form: PersonForm, session: UnitOfWork,
    runtime: RuntimeDep, person: PagePerson,
) -> Response:  # fmt: skip
    """At once: the entry engine refuses them from now on, and the hubs of their
    appointments are told to refuse the tokens already issued to them."""
    _worker(session, person, provider_id, worker_id)
    providers.set_worker_active(
        session, admin=person.principal, provider_id=provider_id, worker_id=worker_id,
        active=False, now=runtime.clock.now(),
    )  # fmt: skip
    publish_bumped(runtime, session)
    return _back(provider_id, "deactivated")


@router.post("/provider/appointments/{appointment_id}/assign")
def assign(
    appointment_id: str, form: PersonForm, session: UnitOfWork, runtime: RuntimeDep,
    person: PagePerson,
) -> Response:  # fmt: skip
    appointment = session.get(AccessGrant, appointment_id)
    if appointment is None or appointment.provider_id is None:
        raise NotFound("no such appointment")
    provider_id = appointment.provider_id
    _admin_of(session, person, provider_id)
    worker_id = form.get("worker_id", "")
    if not worker_id:
        raise InvalidRequest("choose a worker to assign")
    providers.assign_worker(
        session, admin=person.principal, appointment_id=appointment_id, worker_id=worker_id,
        now=runtime.clock.now(),
    )  # fmt: skip
    publish_bumped(runtime, session)
    return _back(provider_id, "assigned")
