"""Sign-ins and re-authentications on the audit log: who, by which way, from which
address, and whether it worked; never a password, a code, a secret or a token.

    account:signin          a session or token was issued (web form, web code step, API)
    account:signin_failed   data.reason: wrong_credentials | not_a_resident | wrong_code
                            | code_locked
    account:reauth          the signed-in person proved it is them again (web page, or the
                            password sent with the API's remote unlock)
    account:reauth_failed   data.reason as above

A failed attempt names the account it was for only when the email (or client id) is one;
an email that is no account is not stored at all, since people type passwords into the
email field. The record is added to the caller's unit of work, which commits it, also on
a failure (the caller answers the failure after committing).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.accounts.models import User
from doorstep.audit import service as audit

UNKNOWN = "unknown"


class Via(StrEnum):
    WEB = "web"  # the resident web app's sign-in form
    WEB_CODE = "web_code"  # its second step, a code from the app or a recovery code
    API = "api"  # POST /v1/auth/token
    REMOTE_UNLOCK = "remote_unlock"  # the password sent with POST .../unlock


class Failure(StrEnum):
    WRONG_CREDENTIALS = "wrong_credentials"  # unknown account, wrong password, inactive
    NOT_A_RESIDENT = "not_a_resident"
    WRONG_CODE = "wrong_code"
    CODE_LOCKED = "code_locked"


def user_id_for(session: Session, email: str) -> str | None:
    """The account this email names, if any (compared as sign-in compares it)."""
    return session.scalar(select(User.id).where(User.email == email.strip().lower()))


def signed_in(
    session: Session, *, actor: str, subject: str, via: Via, client: str, now: datetime
) -> None:
    audit.append(session, at=now, actor=actor, action="account:signin", subject=subject,
                 data={"via": via, "client": client})  # fmt: skip


def sign_in_failed(
    session: Session,
    *,
    subject: str | None,
    via: Via,
    client: str,
    reason: Failure,
    now: datetime,
) -> None:
    audit.append(session, at=now, actor="anonymous", action="account:signin_failed",
                 subject=subject or UNKNOWN,
                 data={"via": via, "client": client, "reason": reason})  # fmt: skip


def reauthenticated(
    session: Session, *, actor: str, user_id: str, via: Via, client: str, now: datetime
) -> None:
    audit.append(session, at=now, actor=actor, action="account:reauth", subject=user_id,
                 data={"via": via, "client": client})  # fmt: skip


def reauth_failed(
    session: Session,
    *,
    actor: str,
    user_id: str,
    via: Via,
    client: str,
    reason: Failure,
    now: datetime,
) -> None:
    audit.append(session, at=now, actor=actor, action="account:reauth_failed", subject=user_id,
                 data={"via": via, "client": client, "reason": reason})  # fmt: skip
