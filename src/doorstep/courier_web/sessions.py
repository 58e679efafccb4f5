"""Courier sign-in for the courier web app: an access token from
`accounts.service.issue_token`, kept in its own HttpOnly cookie (`doorstep_courier`, or
`__Host-doorstep_courier` over https; `doorstep.web.phone_session`), separate from the
resident's session cookie, so a courier's browser session never reaches a resident page
and the other way round.

The token is the courier's bearer token as far as the entry service knows: the entry
request hands it to `access.service.decide`, which authenticates it like any other.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from doorstep.accounts.models import PrincipalKind, Role
from doorstep.accounts.service import IssuedToken, authenticate_password, issue_token
from doorstep.errors import Forbidden
from doorstep.permissions import PrincipalRole
from doorstep.web.phone_session import PhoneSession

SESSION = PhoneSession("doorstep_courier", frozenset({PrincipalRole.COURIER}), "the courier app")


class NotACourier(Forbidden):
    code = "not_a_courier"


def sign_in(
    session: Session, *, email: str, password: str, now: datetime, ttl: timedelta
) -> IssuedToken:
    """Check the password and issue a session token. Wrong email and wrong password fail
    alike; a suspended courier cannot sign in (`authenticate_password`)."""
    user = authenticate_password(session, email=email, password=password, now=now)
    if user.role != Role.COURIER:
        raise NotACourier("this app is for couriers")
    return issue_token(session, kind=PrincipalKind.USER, principal_id=user.id, now=now, ttl=ttl)
