"""Guests' access grants: create (with an invitation or a keypad code), list, revoke, and
"revoke everything now"; accepting an invitation.

Every change that a hub must enforce (a keypad code to program or clear, a grant whose
unused tokens must be refused) bumps that hub's shadow version in the same transaction
(`shadow.bump`); the caller publishes the new document once the transaction has
committed (`router.publish_bumped`). A hub holds at most `MAX_CODES_PER_HUB` keypad
codes (all its doors together), a door `MAX_CODES_PER_DOOR`.

Keypad codes are never stored or logged in the clear: the service keeps an argon2 hash
(to refuse a code already in use at that door) and the code sealed to the hub's own key
(`protocol.seal`), which only that hub can open. The code is shown to the resident
once, in the answer to the request that made it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from doorstep import security
from doorstep.accounts import passwords, signins
from doorstep.accounts.models import Role, User
from doorstep.accounts.service import Principal
from doorstep.audit import service as audit
from doorstep.audit.models import AuditEvent
from doorstep.db import new_id
from doorstep.errors import Conflict, InvalidRequest, NotAuthenticated, NotFound
from doorstep.grants import schedule as schedules
from doorstep.grants.models import (
    AccessGrant,
    Invitation,
    Method,
    Provider,
    ProviderMember,
    Purpose,
)
from doorstep.grants.shadow import bump, held_codes, lock_schedule_problem
from doorstep.homes.models import AccessPoint, Home, Hub
from doorstep.homes.service import owned_home
from doorstep.notify import outbox
from doorstep.protocol.messages import b64encode
from doorstep.protocol.seal import seal
from doorstep.protocol.shadow import MAX_CREDENTIALS
from doorstep.sql import Tx

INVITATION_TTL = timedelta(days=7)
PIN_DIGITS = 6
MAX_CODES_PER_DOOR = 25
MAX_CODES_PER_HUB = MAX_CREDENTIALS  # what one hub's desired document can carry


@dataclass(frozen=True, slots=True)
class GrantSpec:
    access_point: str  # slug
    label: str
    kind: schedules.ScheduleKind
    method: Method
    email: str | None = None
    starts_at: datetime | None = None  # local wall clock (naive) or aware
    ends_at: datetime | None = None
    windows: tuple[dict[str, object], ...] = ()
    uses_limit: int | None = None
    require_geofence: bool = False
    pin: str | None = None
    notes: str = ""


@dataclass(frozen=True, slots=True)
class CreatedGrant:
    grant: AccessGrant
    pin: str | None  # the keypad code, shown once
    invitation_token: str | None  # mailed; returned for the caller's own use only in tests


def create_grant(
    session: Session, *, owner: Principal, home_id: str, spec: GrantSpec, now: datetime,
    invite_url: str,
) -> CreatedGrant:  # fmt: skip
    """A guest's grant on one door of the resident's home. With the app, the guest is
    invited by email (an account without a password until they accept); with a keypad
    code, the code is sealed to the door's hub and the hub is told to program it."""
    home = owned_home(session, owner=owner, home_id=home_id)
    point = _access_point(session, home, spec.access_point)
    zone = ZoneInfo(home.timezone)
    schedule = schedules.build(
        spec.kind, zone, starts_at=spec.starts_at, ends_at=spec.ends_at, windows=list(spec.windows)
    )
    if schedule.ended(now):
        raise InvalidRequest("this schedule has already ended")
    if spec.method == Method.APP and not spec.email:
        raise InvalidRequest("an app grant needs the guest's email, to invite them")
    if spec.method == Method.KEYPAD:
        windows = [window.to_json() for window in schedule.windows]
        problem = lock_schedule_problem(schedule.starts_at, schedule.ends_at, windows, zone)
        if problem is not None:
            raise InvalidRequest(f"a lock cannot hold a keypad code with this schedule: {problem}")
    grant = AccessGrant(
        id=new_id("agr"),
        home_id=home.id,
        access_point_id=point.id,
        purpose=Purpose.GUEST,
        method=spec.method,
        label=spec.label,
        kind=spec.kind,
        timezone=home.timezone,
        starts_at=schedule.starts_at,
        ends_at=schedule.ends_at,
        windows=orjson.dumps([window.to_json() for window in schedule.windows]).decode(),
        uses_limit=1 if spec.kind == schedules.ScheduleKind.ONCE else spec.uses_limit,
        require_geofence=spec.require_geofence,
        notes=spec.notes,
        created_by=owner.id,
        created_at=now,
    )
    guest, token = (None, None)
    if spec.email:
        guest, token = _guest_account(session, spec.email, spec.label, now)
        grant.grantee_id = guest.id
    pin = None
    if spec.method == Method.KEYPAD:
        pin = _program_code(session, grant, point, spec.pin, now)
    session.add(grant)
    session.flush()
    if token is not None and guest is not None:
        _invite(session, guest, grant, token, now)
    audit.append(
        session, at=now, actor=owner.actor, action="grant:created", subject=grant.id,
        home_id=home.id,
        data={"purpose": grant.purpose, "method": grant.method, "kind": grant.kind,
              "access_point": point.slug, "grantee": grant.grantee_id},
    )  # fmt: skip
    if spec.email:
        _mail_guest(session, grant, home, spec.email, token, invite_url, now)
    return CreatedGrant(grant, pin, token)


def _access_point(session: Session, home: Home, slug: str) -> AccessPoint:
    point = session.scalar(
        select(AccessPoint).where(AccessPoint.home_id == home.id, AccessPoint.slug == slug)
    )
    if point is None:
        raise NotFound(f"no access point {slug!r} in this home")
    return point


def _guest_account(
    session: Session, email: str, name: str, now: datetime
) -> tuple[User, str | None]:
    """The guest's account, made now if new (with no usable password: accepting the
    invitation sets one) and the invitation token to mail; an existing guest who has
    already accepted an invitation needs none."""
    email = email.strip().lower()
    user = session.scalar(select(User).where(User.email == email))
    if user is not None and user.role != Role.GUEST:
        raise Conflict("this email belongs to another kind of account; use another address")
    if user is None:
        user = User(
            id=new_id("usr"), email=email, name=name,
            password_hash=security.hash_password(secrets.token_urlsafe(32)),
            role=Role.GUEST, active=True, created_at=now,
        )  # fmt: skip
        session.add(user)
        session.flush()
    accepted = session.scalar(
        select(Invitation.id).where(
            Invitation.user_id == user.id, Invitation.accepted_at.is_not(None)
        )
    )
    return user, None if accepted is not None else security.new_token()


def _invite(session: Session, user: User, grant: AccessGrant, token: str, now: datetime) -> None:
    session.add(
        Invitation(
            id=new_id("inv"), user_id=user.id, grant_id=grant.id,
            token_digest=security.token_digest(token), expires_at=now + INVITATION_TTL,
            created_at=now,
        )
    )  # fmt: skip


def _mail_guest(
    session: Session, grant: AccessGrant, home: Home, email: str, token: str | None,
    invite_url: str, now: datetime,
) -> None:  # fmt: skip
    when = describe(grant)
    if token is not None:
        subject = f"You are invited to {home.name}"
        text = (
            f"You have been given access to {home.name} ({when}). Accept the invitation "
            f"and choose a password here, within 7 days: {invite_url}#{token}"
        )
    else:
        subject = f"New access to {home.name}"
        text = f"You have been given access to {home.name} ({when}). Sign in to see it."
    message = {"subject": subject, "text": text, "home_id": home.id, "grant_id": grant.id}
    outbox.queue_mail(
        Tx.of_session(session), event_id=f"{grant.id}.invited", event_type="grant.invited",
        to=email, message=message, at=now,
    )  # fmt: skip


DAY_NAMES = dict(zip(schedules.WEEKDAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
                     strict=True))  # fmt: skip


def describe(grant: AccessGrant) -> str:
    """When the grant lets in, on the home's wall clock: "Any time", "Mon, Tue
    09:00-17:00", "Sat 24 Dec 2026, 18:00 to Sun 25 Dec 2026, 10:00", "Once, ..."."""
    zone = ZoneInfo(grant.timezone)
    period = _period(grant.starts_at, grant.ends_at, zone)
    if grant.kind == schedules.ScheduleKind.ALWAYS:
        return "Any time"
    if grant.kind == schedules.ScheduleKind.WEEKLY:
        windows = "; ".join(
            f"{', '.join(DAY_NAMES[day] for day in window['days'])} "
            f"{window['start']}-{window['end']}"
            for window in orjson.loads(grant.windows)
        )
        return f"{windows} ({period})" if period else windows
    return f"Once, {period}" if grant.kind == schedules.ScheduleKind.ONCE else period


def _period(start: datetime | None, end: datetime | None, zone: ZoneInfo) -> str:
    def moment(value: datetime) -> str:
        local = value.astimezone(zone)
        return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"

    if start is not None and end is not None:
        return f"{moment(start)} to {moment(end)}"
    if start is not None:
        return f"from {moment(start)}"
    return f"until {moment(end)}" if end is not None else ""


def _program_code(
    session: Session, grant: AccessGrant, point: AccessPoint, pin: str | None, now: datetime
) -> str:
    """Choose or check the code, refuse one already in use at this door or one more than
    the door or its hub may hold, seal it to the hub and bump the hub's shadow. Returns
    the code (to show once).

    The hub's shadow is bumped before the codes are counted: that holds its row until
    this transaction ends, so two codes made at once for one hub are counted one after
    the other and cannot both take its last place (see `shadow.bump`). A refusal rolls
    the bump back with everything else."""
    hub = session.get(Hub, point.hub_id) if point.hub_id else None
    if hub is None or hub.claimed_at is None:
        raise Conflict("this door has no enrolled hub to program a code on")
    if hub.seal_key is None:
        raise Conflict("this hub was enrolled before keypad codes; enroll it again to use them")
    if pin is not None and not (pin.isdigit() and 4 <= len(pin) <= 8):
        raise InvalidRequest("a keypad code is 4 to 8 digits")
    bump(session, hub.id, now)
    if held_codes(Tx.of_session(session), hub_id=hub.id, now=now) >= MAX_CODES_PER_HUB:
        raise Conflict(
            f"this door's hub already holds {MAX_CODES_PER_HUB} keypad codes, the most a hub"
            " can hold (on all its doors); revoke one first",
            details={"limit": MAX_CODES_PER_HUB},
        )
    others = session.execute(
        select(AccessGrant.pin_digest, AccessGrant.ends_at).where(
            AccessGrant.access_point_id == point.id,
            AccessGrant.method == Method.KEYPAD,
            AccessGrant.revoked_at.is_(None),
        )
    ).all()
    # The limit counts the codes still in force or to come: one whose schedule has ended
    # is off the lock (the hub clears it at its end). Every unrevoked code, ended or
    # not, still keeps its digits from being given again at this door.
    in_force = [ends for _, ends in others if ends is None or ends > now]
    if len(in_force) >= MAX_CODES_PER_DOOR:
        raise Conflict(f"this door already has {MAX_CODES_PER_DOOR} codes; revoke one first")
    digests = [digest for digest, _ in others]
    code = pin or _new_code(digests)
    if any(security.verify_password(digest, code) for digest in digests if digest):
        raise Conflict("this code is already in use at this door; choose another")
    grant.pin_digest = security.hash_password(code)
    sealed = seal(hub.seal_key, code.encode(), hub_id=hub.id, context=grant.id)
    grant.pin_sealed = b64encode(sealed)
    return code


def _new_code(others: Sequence[str | None]) -> str:
    for _ in range(20):
        code = "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))
        if not any(security.verify_password(digest, code) for digest in others if digest):
            return code
    raise Conflict("could not choose a free code; try again")  # pragma: no cover


def list_grants(session: Session, *, owner: Principal, home_id: str) -> Sequence[AccessGrant]:
    owned_home(session, owner=owner, home_id=home_id)
    return session.scalars(
        select(AccessGrant)
        .where(AccessGrant.home_id == home_id)
        .order_by(AccessGrant.created_at.desc())
    ).all()


def owned_grant(session: Session, *, owner: Principal, grant_id: str) -> AccessGrant:
    grant = session.get(AccessGrant, grant_id)
    home = session.get(Home, grant.home_id) if grant is not None else None
    if grant is None or home is None or home.owner_id != owner.id:
        raise NotFound("no such grant")
    return grant


def revoke(session: Session, grant: AccessGrant, *, actor: str, now: datetime) -> None:
    """Revoke one grant at once: the service denies it from this transaction on; its hub
    is told to clear its code and refuse its unused tokens (a new shadow version)."""
    if grant.revoked_at is not None:
        return
    grant.revoked_at = now
    grant.revoked_by = actor
    point = session.get(AccessPoint, grant.access_point_id)
    if point is not None and point.hub_id is not None:
        grant.revoked_version = bump(session, point.hub_id, now)
    session.execute(
        update(Invitation)
        .where(Invitation.grant_id == grant.id, Invitation.accepted_at.is_(None))
        .values(expires_at=now)
    )
    audit.append(session, at=now, actor=actor, action="grant:revoked", subject=grant.id,
                 home_id=grant.home_id, data={"shadow_version": grant.revoked_version})  # fmt: skip


def revoke_everything(
    session: Session, *, owner: Principal, home_id: str, now: datetime
) -> list[AccessGrant]:
    """ "Revoke everything now": every grant of the home that is still in force."""
    home = owned_home(session, owner=owner, home_id=home_id)
    grants = session.scalars(
        select(AccessGrant).where(AccessGrant.home_id == home.id, AccessGrant.revoked_at.is_(None))
    ).all()
    for grant in grants:
        revoke(session, grant, actor=owner.actor, now=now)
    audit.append(session, at=now, actor=owner.actor, action="home:revoked_everything",
                 subject=home.id, home_id=home.id, data={"grants": len(grants)})  # fmt: skip
    return list(grants)


class ExistingPasswordRequired(NotAuthenticated):
    """A further invitation for an account that already has a password, sent without
    that password (or while the account's sign-in is paused, `signins.paused`)."""

    code = "existing_password_required"


def accept_invitation(
    session: Session, *, token: str, password: str, name: str | None, now: datetime,
    via: signins.Via = signins.Via.VISITOR_WEB, client: str = signins.UNKNOWN,
) -> User:  # fmt: skip
    """Redeem an invitation, once. The first an account accepts gives it its password
    (and name). A guest invited again before accepting holds more than one link: once
    the account has a password, another of its invitations is accepted only with that
    password, and changes neither it nor the name, so that whoever holds an older link (a
    forwarded email, a shared phone) cannot choose a new password and take the account.

    That check is a sign-in's password check (`accounts.signins`): a wrong password, or
    any while the account's sign-in is paused, is recorded as `account:signin_failed`
    (`via`, from `client`), counts toward the pause, and raises
    `ExistingPasswordRequired` with nothing else changed; the caller commits the record
    before answering, as the sign-in routes do.

    The invitation's and the account's rows are locked (on PostgreSQL) before they are
    read, so two of an account's invitations accepted at once cannot both set its
    password: the second waits, then finds the password set."""
    invitation = session.scalar(
        select(Invitation)
        .where(Invitation.token_digest == security.token_digest(token))
        .with_for_update()
    )
    if invitation is None or invitation.accepted_at is not None or invitation.expires_at <= now:
        raise NotAuthenticated("this invitation is unknown, used or expired")
    user = session.get(User, invitation.user_id, with_for_update=True)
    if user is None or not user.active:
        raise NotAuthenticated("this invitation is unknown, used or expired")
    first = not _has_password(session, user)
    if first:
        user.password_hash = security.hash_password(password)
        if name:
            user.name = name
    else:
        _check_existing_password(session, user, password, via=via, client=client, now=now)
    invitation.accepted_at = now
    audit.append(session, at=now, actor=f"{user.role}:{user.id}", action="invitation:accepted",
                 subject=invitation.id, data={"grant_id": invitation.grant_id,
                                              "provider_id": invitation.provider_id,
                                              "password_set": first})  # fmt: skip
    return user


def _has_password(session: Session, user: User) -> bool:
    """Whether the account has chosen its password (an invited account is made with a
    random one nobody knows): it has accepted an invitation, or set one since, by a
    change or an emailed reset link (`accounts.passwords`)."""
    accepted = session.scalar(
        select(Invitation.id)
        .where(Invitation.user_id == user.id, Invitation.accepted_at.is_not(None))
        .limit(1)
    )
    if accepted is not None:
        return True
    changed = session.scalar(
        select(AuditEvent.seq)
        .where(AuditEvent.subject == user.id, AuditEvent.action == passwords.CHANGED)
        .limit(1)
    )
    return changed is not None


def _check_existing_password(
    session: Session, user: User, password: str, *, via: signins.Via, client: str, now: datetime
) -> None:
    if signins.paused(session, user_id=user.id, now=now):
        security.verify_password(None, password)  # the same work; not checked
        failure = signins.Failure.PAUSED
    elif security.verify_password(user.password_hash, password):
        return
    else:
        failure = signins.Failure.WRONG_CREDENTIALS
    signins.sign_in_failed(session, subject=user.id, via=via, client=client, reason=failure,
                           now=now)  # fmt: skip
    raise ExistingPasswordRequired(
        "this account already has a password: accept the invitation with it"
    )


def grants_of_visitor(session: Session, *, visitor: Principal) -> Sequence[AccessGrant]:
    """What a guest or worker may use: their grants still in force, newest first. A
    provider's appointment counts only while they are an active worker of it and it is
    an active provider (as the entry engine checks, `access.visits`): one let go must
    not go on learning where, when and with which notes its homes are visited."""
    working = exists().where(
        ProviderMember.provider_id == AccessGrant.provider_id,
        ProviderMember.user_id == AccessGrant.grantee_id,
        ProviderMember.active.is_(True),
    )
    provider_active = exists().where(
        Provider.id == AccessGrant.provider_id, Provider.active.is_(True)
    )
    return session.scalars(
        select(AccessGrant)
        .where(
            AccessGrant.grantee_id == visitor.id,
            AccessGrant.revoked_at.is_(None),
            or_(AccessGrant.provider_id.is_(None), and_(working, provider_active)),
        )
        .order_by(AccessGrant.created_at.desc())
    ).all()
