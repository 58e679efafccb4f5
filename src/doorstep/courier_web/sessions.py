"""Courier sign-in for the courier web app: an access token from
`accounts.service.issue_token`, kept in its own HttpOnly cookie (`doorstep_courier`, or
`__Host-doorstep_courier` over https), separate from the resident's session cookie, so a
courier's browser session never reaches a resident page and the other way round.

The token is the courier's bearer token as far as the entry service knows: the entry
request hands it to `access.service.decide`, which authenticates it like any other.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from doorstep.accounts.models import PrincipalKind, Role, User
from doorstep.accounts.service import (
    IssuedToken,
    Principal,
    authenticate_password,
    issue_token,
    resolve_token,
)
from doorstep.errors import Forbidden, NotAuthenticated
from doorstep.permissions import PrincipalRole
from doorstep.security import token_digest
from doorstep.web.security import CookiePolicy


class NotACourier(Forbidden):
    code = "not_a_courier"


@dataclass(frozen=True, slots=True)
class CourierSignedIn:
    principal: Principal
    name: str
    token: str  # the session's access token, as the entry service authenticates it
    digest: str  # its digest; the CSRF token is bound to it


def cookie_name(cookies: CookiePolicy) -> str:
    return "__Host-doorstep_courier" if cookies.secure else "doorstep_courier"


def sign_in(
    session: Session, *, email: str, password: str, now: datetime, ttl: timedelta
) -> IssuedToken:
    """Check the password and issue a session token. Wrong email and wrong password fail
    alike; a suspended courier cannot sign in (`authenticate_password`)."""
    user = authenticate_password(session, email=email, password=password)
    if user.role != Role.COURIER:
        raise NotACourier("this app is for couriers")
    return issue_token(session, kind=PrincipalKind.USER, principal_id=user.id, now=now, ttl=ttl)


def resolve(session: Session, *, token: str, now: datetime) -> CourierSignedIn:
    return resolve_person(session, token=token, now=now, roles={PrincipalRole.COURIER})


def resolve_person(
    session: Session, *, token: str, now: datetime, roles: Collection[PrincipalRole]
) -> CourierSignedIn:
    """The user a session token belongs to, if their role is one of `roles` (shared with
    `doorstep.visitor_web`, whose guests and workers have the same kind of session)."""
    principal = resolve_token(session, token=token, now=now)
    user = session.get(User, principal.id) if principal.kind == PrincipalKind.USER else None
    if user is None or principal.role not in roles:
        raise NotAuthenticated(f"sign in as a {' or a '.join(sorted(roles))}")
    return CourierSignedIn(principal, user.name, token, token_digest(token))
