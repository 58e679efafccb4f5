"""Service providers: organisations with admins and workers, appointments, blocking.

- A provider signs up with its first admin (`POST /v1/providers`). Admins invite workers
  by email (the account exists at once, without a password; the invitation link sets it)
  and deactivate them. A deactivated worker is denied at once, and the hubs of their
  appointments are told to refuse tokens already issued to them.
- A resident books an appointment (`POST /v1/homes/{id}/appointments`): a `service`
  access grant of the provider for one window at one door, with notes. The provider's
  admin assigns a worker; the worker enters through the entry engine, with their phone
  key (`/v1/visits`).
- A resident blocks a provider at a home: its appointments there are revoked and it can
  book no more.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep import security
from doorstep.accounts.models import Role, User
from doorstep.accounts.service import Principal
from doorstep.audit import service as audit
from doorstep.db import new_id
from doorstep.deps import ProviderPerson, Resident, RuntimeDep, SessionDep
from doorstep.errors import Conflict, InvalidRequest, NotFound, TooManyRequests
from doorstep.grants import schedule as schedules
from doorstep.grants import service as grants
from doorstep.grants.models import (
    AccessGrant,
    Invitation,
    MemberRole,
    Method,
    Provider,
    ProviderBlock,
    ProviderMember,
    Purpose,
)
from doorstep.grants.router import INVITE_PATH, grant_read, publish_bumped
from doorstep.grants.schemas import (
    AppointmentCreate,
    AssignWorker,
    GrantRead,
    MemberRead,
    ProviderCreate,
    ProviderRead,
    RevokedEverything,
    WorkerInvite,
)
from doorstep.grants.shadow import bump
from doorstep.homes.models import AccessPoint
from doorstep.homes.service import owned_home
from doorstep.notify import outbox
from doorstep.sql import Tx

router = APIRouter(prefix="/v1", tags=["providers"])


# --- the provider's side -----------------------------------------------------------


def create_provider(session: Session, *, body: ProviderCreate, now: datetime) -> Provider:
    email = body.admin_email.strip().lower()
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists")
    provider = Provider(id=new_id("prv"), name=body.name, active=True, created_at=now)
    admin = User(
        id=new_id("usr"), email=email, name=body.admin_name,
        password_hash=security.hash_password(body.admin_password), role=Role.WORKER,
        active=True, created_at=now,
    )  # fmt: skip
    session.add_all([provider, admin])
    session.flush()
    session.add(
        ProviderMember(
            provider_id=provider.id,
            user_id=admin.id,
            role=MemberRole.ADMIN,
            active=True,
            created_at=now,
        )
    )
    audit.append(session, at=now, actor=f"worker:{admin.id}", action="provider:created",
                 subject=provider.id)  # fmt: skip
    return provider


def _membership(session: Session, person: Principal, provider_id: str) -> ProviderMember:
    member = session.get(ProviderMember, (provider_id, person.id))
    if member is None or not member.active:
        raise NotFound("no such provider")
    return member


def _admin_of(session: Session, person: Principal, provider_id: str) -> Provider:
    member = _membership(session, person, provider_id)
    provider = session.get(Provider, provider_id)
    if member.role != MemberRole.ADMIN or provider is None:
        raise NotFound("no such provider")
    return provider


def invite_worker(
    session: Session, *, admin: Principal, provider_id: str, body: WorkerInvite, now: datetime,
    invite_url: str,
) -> ProviderMember:  # fmt: skip
    provider = _admin_of(session, admin, provider_id)
    email = body.email.strip().lower()
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists")
    worker = User(
        id=new_id("usr"), email=email, name=body.name,
        password_hash=security.hash_password(secrets.token_urlsafe(32)), role=Role.WORKER,
        active=True, created_at=now,
    )  # fmt: skip
    session.add(worker)
    session.flush()
    member = ProviderMember(provider_id=provider.id, user_id=worker.id, role=MemberRole.WORKER,
                            active=True, created_at=now)  # fmt: skip
    token = security.new_token()
    session.add_all([
        member,
        Invitation(id=new_id("inv"), user_id=worker.id, provider_id=provider.id,
                   token_digest=security.token_digest(token),
                   expires_at=now + grants.INVITATION_TTL, created_at=now),
    ])  # fmt: skip
    session.flush()
    audit.append(session, at=now, actor=admin.actor, action="provider:worker_invited",
                 subject=worker.id, data={"provider_id": provider.id})  # fmt: skip
    message = {
        "subject": f"Join {provider.name} on Doorstep",
        "text": f"{provider.name} added you as a worker. Accept and choose a password within"
        f" 7 days: {invite_url}#{token}",
    }
    outbox.queue_mail(Tx.of_session(session), event_id=f"{worker.id}.invited",
                      event_type="worker.invited", to=email, message=message, at=now)  # fmt: skip
    return member


def set_worker_active(
    session: Session, *, admin: Principal, provider_id: str, worker_id: str, active: bool,
    now: datetime,
) -> ProviderMember:  # fmt: skip
    """Deactivate (at once: the engine reads membership at every request, and the hubs of
    the worker's appointments refuse tokens already issued) or reactivate a worker."""
    _admin_of(session, admin, provider_id)
    member = session.get(ProviderMember, (provider_id, worker_id))
    if member is None or worker_id == admin.id:
        raise NotFound("no such worker")
    member.active = active
    if not active:
        for hub_id in _hubs_of_worker(session, provider_id, worker_id):
            bump(session, hub_id, now)
    action = "provider:worker_reactivated" if active else "provider:worker_deactivated"
    audit.append(session, at=now, actor=admin.actor, action=action, subject=worker_id,
                 data={"provider_id": provider_id})  # fmt: skip
    return member


def _hubs_of_worker(session: Session, provider_id: str, worker_id: str) -> set[str]:
    rows = session.scalars(
        select(AccessPoint.hub_id)
        .join(AccessGrant, AccessGrant.access_point_id == AccessPoint.id)
        .where(AccessGrant.provider_id == provider_id, AccessGrant.grantee_id == worker_id)
    ).all()
    return {hub_id for hub_id in rows if hub_id is not None}


def assign_worker(
    session: Session, *, admin: Principal, appointment_id: str, worker_id: str, now: datetime
) -> AccessGrant:
    appointment = session.get(AccessGrant, appointment_id)
    if appointment is None or appointment.provider_id is None:
        raise NotFound("no such appointment")
    _admin_of(session, admin, appointment.provider_id)
    member = session.get(ProviderMember, (appointment.provider_id, worker_id))
    if member is None or not member.active:
        raise InvalidRequest("that person is not an active worker of this provider")
    if appointment.revoked_at is not None:
        raise Conflict("this appointment was cancelled")
    previous = appointment.grantee_id
    appointment.grantee_id = worker_id
    point = session.get(AccessPoint, appointment.access_point_id)
    if previous is not None and previous != worker_id and point and point.hub_id:
        bump(session, point.hub_id, now)  # the previous worker's tokens are refused
    audit.append(session, at=now, actor=admin.actor, action="appointment:assigned",
                 subject=appointment.id, home_id=appointment.home_id,
                 data={"worker_id": worker_id, "previous": previous})  # fmt: skip
    return appointment


def appointments_of(
    session: Session, *, person: Principal, provider_id: str
) -> Sequence[AccessGrant]:
    """A provider's appointments: every one for its admins, only their own for a worker
    (another worker's clients, their addresses, hours and notes are not theirs to
    read). An inactive provider is "not found", as to the entry engine."""
    member = _membership(session, person, provider_id)
    provider = session.get(Provider, provider_id)
    if provider is None or not provider.active:
        raise NotFound("no such provider")
    query = select(AccessGrant).where(AccessGrant.provider_id == provider_id)
    if member.role != MemberRole.ADMIN:
        query = query.where(AccessGrant.grantee_id == person.id)
    return session.scalars(query.order_by(AccessGrant.starts_at)).all()


# --- the resident's side -----------------------------------------------------------


def book_appointment(
    session: Session, *, owner: Principal, home_id: str, body: AppointmentCreate, now: datetime
) -> AccessGrant:
    home = owned_home(session, owner=owner, home_id=home_id)
    provider = session.get(Provider, body.provider_id)
    if provider is None or not provider.active:
        raise NotFound("no such provider")
    if session.get(ProviderBlock, (home.id, provider.id)) is not None:
        raise Conflict("you have blocked this provider; unblock it first")
    point = session.scalar(
        select(AccessPoint).where(
            AccessPoint.home_id == home.id, AccessPoint.slug == body.access_point
        )
    )
    if point is None:
        raise NotFound(f"no access point {body.access_point!r} in this home")
    window = schedules.build(
        schedules.ScheduleKind.RANGE, ZoneInfo(home.timezone), starts_at=body.starts_at,
        ends_at=body.ends_at, windows=[],
    )  # fmt: skip
    if window.ended(now):
        raise InvalidRequest("this window has already ended")
    appointment = AccessGrant(
        id=new_id("apt"), home_id=home.id, access_point_id=point.id, purpose=Purpose.SERVICE,
        method=Method.APP, label=body.label or provider.name, provider_id=provider.id,
        kind=schedules.ScheduleKind.RANGE, timezone=home.timezone, starts_at=window.starts_at,
        ends_at=window.ends_at, windows="[]", require_geofence=False, notes=body.notes,
        created_by=owner.id, created_at=now,
    )  # fmt: skip
    session.add(appointment)
    session.flush()
    audit.append(session, at=now, actor=owner.actor, action="appointment:booked",
                 subject=appointment.id, home_id=home.id,
                 data={"provider_id": provider.id, "access_point": point.slug})  # fmt: skip
    return appointment


def block_provider(
    session: Session, *, owner: Principal, home_id: str, provider_id: str, now: datetime
) -> int:
    """Block a provider at a home: every appointment of it there is revoked now."""
    home = owned_home(session, owner=owner, home_id=home_id)
    if session.get(Provider, provider_id) is None:
        raise NotFound("no such provider")
    if session.get(ProviderBlock, (home.id, provider_id)) is None:
        session.add(ProviderBlock(home_id=home.id, provider_id=provider_id, created_at=now))
    appointments = session.scalars(
        select(AccessGrant).where(
            AccessGrant.home_id == home.id, AccessGrant.provider_id == provider_id,
            AccessGrant.revoked_at.is_(None),
        )
    ).all()  # fmt: skip
    for appointment in appointments:
        grants.revoke(session, appointment, actor=owner.actor, now=now)
    audit.append(session, at=now, actor=owner.actor, action="provider:blocked",
                 subject=provider_id, home_id=home.id,
                 data={"revoked": len(appointments)})  # fmt: skip
    return len(appointments)


# --- routes --------------------------------------------------------------------------


@router.post("/providers", status_code=201, response_model=ProviderRead)
def sign_up_provider(
    body: ProviderCreate, request: Request, session: SessionDep, runtime: RuntimeDep
) -> object:
    """A provider organisation signs up with its first admin (who signs in at
    `/v1/auth/token` like anyone)."""
    client = request.client.host if request.client else "unknown"
    if not runtime.claim_limiter.allow(f"provider:{client}", runtime.clock.timestamp()):
        raise TooManyRequests("too many sign-ups; wait a minute")
    return create_provider(session, body=body, now=runtime.clock.now())


@router.post("/providers/{provider_id}/workers", status_code=201, response_model=MemberRead)
def invite(
    provider_id: str, body: WorkerInvite, request: Request, session: SessionDep,
    runtime: RuntimeDep, admin: ProviderPerson,
) -> object:  # fmt: skip
    base = runtime.settings.public_url or str(request.base_url)
    member = invite_worker(
        session, admin=admin, provider_id=provider_id, body=body, now=runtime.clock.now(),
        invite_url=base.rstrip("/") + INVITE_PATH,
    )  # fmt: skip
    return MemberRead(user_id=member.user_id, role=member.role, active=member.active,
                      email=body.email.lower(), name=body.name)  # fmt: skip


@router.get("/providers/{provider_id}/workers", response_model=list[MemberRead])
def list_workers(provider_id: str, session: SessionDep, admin: ProviderPerson) -> object:
    _admin_of(session, admin, provider_id)
    rows = session.execute(
        select(ProviderMember, User)
        .join(User, User.id == ProviderMember.user_id)
        .where(ProviderMember.provider_id == provider_id)
        .order_by(User.name)
    ).all()
    return [
        MemberRead(user_id=m.user_id, role=m.role, active=m.active, email=u.email, name=u.name)
        for m, u in rows
    ]


@router.post("/providers/{provider_id}/workers/{worker_id}/deactivate", response_model=MemberRead)
def deactivate(
    provider_id: str, worker_id: str, session: SessionDep, runtime: RuntimeDep,
    admin: ProviderPerson,
) -> object:  # fmt: skip
    member = set_worker_active(
        session, admin=admin, provider_id=provider_id, worker_id=worker_id, active=False,
        now=runtime.clock.now(),
    )  # fmt: skip
    publish_bumped(runtime, session)
    return MemberRead(user_id=member.user_id, role=member.role, active=member.active)


@router.get("/providers/{provider_id}/appointments", response_model=list[GrantRead])
def provider_appointments(provider_id: str, session: SessionDep, person: ProviderPerson) -> object:
    return [
        GrantRead.of(a) for a in appointments_of(session, person=person, provider_id=provider_id)
    ]


@router.post("/appointments/{appointment_id}/assign", response_model=GrantRead)
def assign(
    appointment_id: str, body: AssignWorker, session: SessionDep, runtime: RuntimeDep,
    admin: ProviderPerson,
) -> object:  # fmt: skip
    appointment = assign_worker(session, admin=admin, appointment_id=appointment_id,
                                worker_id=body.worker_id, now=runtime.clock.now())  # fmt: skip
    publish_bumped(runtime, session)
    return GrantRead.of(appointment)


@router.post("/homes/{home_id}/appointments", status_code=201, response_model=GrantRead)
def book(
    home_id: str, body: AppointmentCreate, session: SessionDep, runtime: RuntimeDep,
    owner: Resident,
) -> object:  # fmt: skip
    appointment = book_appointment(session, owner=owner, home_id=home_id, body=body,
                                   now=runtime.clock.now())  # fmt: skip
    return grant_read(session, appointment)


@router.get("/providers", response_model=list[ProviderRead])
def list_providers(session: SessionDep, _owner: Resident) -> object:
    """Active providers a resident can book."""
    return session.scalars(
        select(Provider).where(Provider.active.is_(True)).order_by(Provider.name).limit(500)
    ).all()


@router.post("/homes/{home_id}/blocked-providers/{provider_id}", response_model=RevokedEverything)
def block(
    home_id: str, provider_id: str, session: SessionDep, runtime: RuntimeDep, owner: Resident
) -> object:
    """Block a provider here: its appointments are revoked now, and it can book no more."""
    revoked = block_provider(session, owner=owner, home_id=home_id, provider_id=provider_id,
                             now=runtime.clock.now())  # fmt: skip
    publish_bumped(runtime, session)
    return RevokedEverything(revoked=revoked)
