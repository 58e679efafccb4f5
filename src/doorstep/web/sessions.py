"""Browser sessions: a sign-in is an access token from `accounts.service.issue_token`, kept
in an HttpOnly cookie, so it expires like every token and is stored only as a digest.

Only residents use this app for now. "Sign out everywhere" deletes every token of the
user, API bearer tokens included; the sessions list shows when each was issued and when
it expires, never the token or its digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from doorstep.accounts.models import AccessToken, PrincipalKind, Role, User
from doorstep.accounts.service import (
    IssuedToken,
    Principal,
    authenticate_password,
    issue_token,
    resolve_token,
)
from doorstep.audit import service as audit
from doorstep.errors import Forbidden, NotAuthenticated
from doorstep.permissions import PrincipalRole
from doorstep.security import token_digest


class NotAResident(Forbidden):
    code = "not_a_resident"


@dataclass(frozen=True, slots=True)
class SignedIn:
    principal: Principal
    user: User
    digest: str  # of this browser's session token; the CSRF token is bound to it


@dataclass(frozen=True, slots=True)
class ActiveSession:
    created_at: datetime
    expires_at: datetime
    current: bool


def sign_in(
    session: Session, *, email: str, password: str, now: datetime, ttl: timedelta
) -> IssuedToken:
    """Check the password and issue a session token. Wrong email and wrong password fail
    alike (same message, same argon2 work)."""
    user = authenticate_password(session, email=email, password=password)
    if user.role != Role.RESIDENT:
        raise NotAResident("this web app is for residents; couriers use the courier app")
    return issue_token(session, kind=PrincipalKind.USER, principal_id=user.id, now=now, ttl=ttl)


def resolve(session: Session, *, token: str, now: datetime) -> SignedIn:
    principal = resolve_token(session, token=token, now=now)
    user = session.get(User, principal.id) if principal.kind == PrincipalKind.USER else None
    if user is None or principal.role != PrincipalRole.RESIDENT:
        raise NotAuthenticated("sign in as a resident")
    return SignedIn(principal, user, token_digest(token))


def sign_out(session: Session, *, token: str) -> None:
    session.execute(delete(AccessToken).where(AccessToken.digest == token_digest(token)))


def sign_out_everywhere(session: Session, *, user: SignedIn, now: datetime) -> int:
    """Delete every token of the user; returns how many there were."""
    result = session.execute(
        delete(AccessToken).where(
            AccessToken.principal_kind == PrincipalKind.USER,
            AccessToken.principal_id == user.user.id,
        )
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    audit.append(
        session,
        at=now,
        actor=user.principal.actor,
        action="account:sessions:revoked",
        subject=user.user.id,
        data={"sessions": count},
    )
    return count


def active_sessions(session: Session, *, user: SignedIn, now: datetime) -> list[ActiveSession]:
    rows = session.scalars(
        select(AccessToken)
        .where(
            AccessToken.principal_kind == PrincipalKind.USER,
            AccessToken.principal_id == user.user.id,
            AccessToken.expires_at > now,
        )
        .order_by(AccessToken.created_at.desc())
    ).all()
    return [
        ActiveSession(row.created_at, row.expires_at, row.digest == user.digest) for row in rows
    ]
