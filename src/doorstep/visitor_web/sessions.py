"""Sign-in for guests and provider workers (admins included): an access token from
`accounts.service.issue_token` in its own HttpOnly cookie (`doorstep_guest`, or
`__Host-doorstep_guest` over https; `doorstep.web.phone_session`), apart from the
resident's and the courier's, so one browser's guest session never reaches a resident or
courier page, nor the other way round.

The token is the person's bearer token as far as the entry engine knows: a visit hands it
to `access.visits.decide_visit`, which authenticates it like any other.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from doorstep.accounts.models import PrincipalKind, Role, User
from doorstep.accounts.service import IssuedToken, authenticate_password, issue_token
from doorstep.errors import Forbidden
from doorstep.permissions import PrincipalRole
from doorstep.web.phone_session import PhoneSession

SESSION = PhoneSession(
    "doorstep_guest", frozenset({PrincipalRole.GUEST, PrincipalRole.WORKER}), "the guest app"
)


class NotAVisitor(Forbidden):
    code = "not_a_visitor"


def sign_in(
    session: Session, *, email: str, password: str, now: datetime, ttl: timedelta
) -> IssuedToken:
    """Check the password and issue a session token. Wrong email and wrong password fail
    alike (`authenticate_password`); residents and couriers have apps of their own."""
    user = authenticate_password(session, email=email, password=password, now=now)
    return start(session, user=user, now=now, ttl=ttl)


def start(session: Session, *, user: User, now: datetime, ttl: timedelta) -> IssuedToken:
    """A session for a guest or worker who has just proven who they are (a password, or
    an invitation they have just accepted)."""
    if user.role not in (Role.GUEST, Role.WORKER):
        raise NotAVisitor("this app is for guests and service workers")
    return issue_token(session, kind=PrincipalKind.USER, principal_id=user.id, now=now, ttl=ttl)
