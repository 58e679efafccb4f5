"""Accounts: create users and carriers, authenticate, issue, resolve and end bearer
tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from doorstep import security
from doorstep.accounts import signins
from doorstep.accounts.models import AccessToken, ApiClient, Carrier, PrincipalKind, Role, User
from doorstep.audit import service as audit
from doorstep.db import new_id
from doorstep.errors import Conflict, NotAuthenticated, NotFound
from doorstep.permissions import GRANTED, Permission, PrincipalRole


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    id: str
    role: PrincipalRole
    carrier_id: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.id}"

    def can(self, permission: Permission) -> bool:
        return permission in GRANTED[self.role]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_at: datetime
    principal_id: str  # whose token it is


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    password: str,
    role: Role,
    now: datetime,
    carrier_id: str | None = None,
    actor: str = "system",
) -> User:
    email = email.strip().lower()
    # Hashed before the email is looked up, so that a taken email takes as long as a new one.
    password_hash = security.hash_password(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists")
    user = User(
        id=new_id("usr"),
        email=email,
        name=name,
        password_hash=password_hash,
        role=role,
        carrier_id=carrier_id,
        active=True,
        created_at=now,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("an account with this email already exists") from exc
    audit.append(session, at=now, actor=actor, action=f"account:{role}:created", subject=user.id)
    return user


def create_carrier(
    session: Session, *, name: str, now: datetime, actor: str
) -> tuple[Carrier, ApiClient, str]:
    """A carrier and its first API client; the plain secret is returned once, here."""
    carrier = Carrier(id=new_id("car"), name=name, created_at=now)
    session.add(carrier)
    session.flush()  # no ORM relationship orders the inserts, so the parent goes first
    secret = security.new_token()
    client = ApiClient(
        id=new_id("cli"),
        carrier_id=carrier.id,
        secret_hash=security.hash_password(secret),
        active=True,
        created_at=now,
    )
    session.add(client)
    session.flush()
    audit.append(session, at=now, actor=actor, action="carrier:created", subject=carrier.id)
    return carrier, client, secret


class SignInPaused(NotAuthenticated):
    """Too many wrong passwords for this account lately (`signins.paused`); answered as
    a wrong password is, so that it says nothing about the account."""


def authenticate_password(session: Session, *, email: str, password: str, now: datetime) -> User:
    """The active account with this email and password. An unknown email, a wrong
    password and a paused account fail alike, after the same argon2 work."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is not None and signins.paused(session, user_id=user.id, now=now):
        security.verify_password(None, password)
        raise SignInPaused("wrong email or password")
    ok = security.verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        raise NotAuthenticated("wrong email or password")
    return user


def authenticate_client(session: Session, *, client_id: str, secret: str) -> ApiClient:
    client = session.get(ApiClient, client_id)
    ok = security.verify_password(client.secret_hash if client else None, secret)
    if client is None or not ok or not client.active:
        raise NotAuthenticated("wrong client id or secret")
    return client


def issue_token(
    session: Session, *, kind: PrincipalKind, principal_id: str, now: datetime, ttl: timedelta
) -> IssuedToken:
    token = security.new_token()
    expires_at = now + ttl
    session.add(
        AccessToken(
            digest=security.token_digest(token),
            principal_kind=kind,
            principal_id=principal_id,
            expires_at=expires_at,
            created_at=now,
        )
    )
    return IssuedToken(token, expires_at, principal_id)


def resolve_token(session: Session, *, token: str, now: datetime) -> Principal:
    row = session.get(AccessToken, security.token_digest(token))
    if row is None or row.expires_at <= now:
        raise NotAuthenticated("token is unknown or expired")
    if row.principal_kind == PrincipalKind.CLIENT:
        client = session.get(ApiClient, row.principal_id)
        if client is None or not client.active:
            raise NotAuthenticated("client is disabled")
        return Principal(PrincipalKind.CLIENT, client.id, PrincipalRole.CARRIER, client.carrier_id)
    user = session.get(User, row.principal_id)
    if user is None or not user.active:
        raise NotAuthenticated("account is disabled")
    return Principal(PrincipalKind.USER, user.id, PrincipalRole(user.role), user.carrier_id)


def end_sessions(session: Session, *, user_id: str, keep: str | None = None) -> int:
    """Delete every token of the user (browser sessions of all three web apps and API
    bearer tokens) but the one whose digest is `keep`; returns how many were deleted.
    The web app's rows about its sessions are its own to tidy (`web.sessions`)."""
    condition = [
        AccessToken.principal_kind == PrincipalKind.USER,
        AccessToken.principal_id == user_id,
    ]
    if keep is not None:
        condition.append(AccessToken.digest != keep)
    result = session.execute(delete(AccessToken).where(*condition))
    return int(getattr(result, "rowcount", 0) or 0)


def set_courier_active(
    session: Session, *, manager: Principal, courier_id: str, active: bool, now: datetime
) -> User:
    """Suspend or reinstate a courier. A carrier manages only its own couriers; an
    operator any. Someone else's courier is "not found"."""
    user = session.get(User, courier_id)
    mine = manager.role == PrincipalRole.OPERATOR or (
        user is not None and user.carrier_id == manager.carrier_id
    )
    if user is None or user.role != Role.COURIER or not mine:
        raise NotFound("no such courier")
    user.active = active
    action = "courier:reinstated" if active else "courier:suspended"
    audit.append(session, at=now, actor=manager.actor, action=action, subject=user.id)
    return user
