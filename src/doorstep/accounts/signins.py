"""Sign-ins and re-authentications on the audit log: who, by which way, from which
address, and whether it worked; never a password, a code, a secret or a token.

    account:signin          a session or token was issued (web form, web code step,
                            passkey, API)
    account:signin_failed   data.reason: wrong_credentials | not_a_resident | wrong_code
                            | code_locked | passkey_refused | passkey_counter
    account:reauth          the signed-in person proved it is them again (web page, or the
                            password sent with the API's remote unlock, revoke-everything,
                            or two-step sign-in on or off)
    account:reauth_failed   data.reason as above (also the current password on the
                            password change page and POST /v1/me/password)

A failed attempt names the account it was for only when the email (or client id) is one;
an email that is no account is not stored at all, since people type passwords into the
email field. The record is added to the caller's unit of work, which commits it, also on
a failure (the caller answers the failure after committing).

These records are also the account's guard against guessing spread over many addresses
(the per-address limit cannot see that): after `PAUSE_AFTER` wrong passwords for one
account within `PAUSE_WINDOW`, with no successful sign-in since, its password is not
checked at all until the window has passed (`paused`, enforced by
`accounts.service.authenticate_password`). A paused attempt is answered exactly as a
wrong password is, so the pause says nothing about whether the account exists, and is
recorded with reason `paused`, which does not count: a guesser gets at most `PAUSE_AFTER`
tries per window, and the owner can sign in again once it has passed, or at once after
choosing a new password ("Forgot your password?", `accounts.passwords`). The owner is
emailed when a pause begins (at most once per window), so a pause they did not cause is
news, not a mystery. Counted from the audit log, the pause holds across restarts and
across service processes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from doorstep.accounts import twofactor
from doorstep.accounts.models import User
from doorstep.audit import service as audit
from doorstep.audit.models import AuditEvent
from doorstep.errors import NotAuthenticated
from doorstep.notify import outbox
from doorstep.sql import Tx

UNKNOWN = "unknown"


PAUSE_AFTER = 10
PAUSE_WINDOW = timedelta(minutes=15)


class Via(StrEnum):
    WEB = "web"  # the resident web app's sign-in form
    COURIER_WEB = "courier_web"  # the courier app's sign-in form
    VISITOR_WEB = "visitor_web"  # the guest and provider app's sign-in form
    WEB_CODE = "web_code"  # its second step, a code from the app or a recovery code
    API = "api"  # POST /v1/auth/token
    REMOTE_UNLOCK = "remote_unlock"  # the password sent with POST .../unlock
    REVOKE_EVERYTHING = "revoke_everything"  # the password sent with POST .../revoke-everything
    # Names of ways in, not secrets (S105):
    PASSWORD_CHANGE = "password_change"  # noqa: S105 - the current password on /account/password
    API_PASSWORD_CHANGE = "api_password_change"  # noqa: S105 - ... sent to POST /v1/me/password
    API_TWO_FACTOR = "api_two_factor"  # the password sent to POST, DELETE /v1/me/two-factor
    PASSWORD_RESET = "password_reset"  # noqa: S105 - an emailed link (`accounts.passwords`)
    PASSKEY = "passkey"  # "Sign in with a passkey" (`accounts.passkeys`): both factors


class Failure(StrEnum):
    WRONG_CREDENTIALS = "wrong_credentials"  # unknown account, wrong password, inactive
    NOT_A_RESIDENT = "not_a_resident"
    WRONG_CODE = "wrong_code"
    CODE_LOCKED = "code_locked"
    PAUSED = "paused"  # too many wrong passwords lately: the password was not checked
    NOT_A_COURIER = "not_a_courier"
    NOT_A_VISITOR = "not_a_visitor"
    PASSKEY_REFUSED = "passkey_refused"  # unknown, expired, or not verified
    PASSKEY_COUNTER = "passkey_counter"  # its sign count did not grow: maybe a clone


def paused(session: Session, *, user_id: str, now: datetime) -> bool:
    """Whether this account's password sign-in is paused: `PAUSE_AFTER` wrong passwords
    within `PAUSE_WINDOW` and no successful sign-in, re-authentication or password
    change since.

    Only the records that count are read (successes and wrong passwords): the attempts
    refused while paused, as many as a guesser cares to send, must not push the wrong
    passwords out of sight and so lift the pause early."""
    actions = session.scalars(
        select(AuditEvent.action)
        .where(
            AuditEvent.subject == user_id,
            AuditEvent.action.in_(_ATTEMPTS),
            AuditEvent.ts > now - PAUSE_WINDOW,
            or_(
                AuditEvent.action.in_(_SUCCESSES),
                AuditEvent.data["reason"].as_string() == Failure.WRONG_CREDENTIALS.value,
            ),
        )
        .order_by(AuditEvent.seq.desc())
        .limit(PAUSE_AFTER)
    ).all()
    wrong = 0
    for action in actions:
        if action in _SUCCESSES:
            break
        wrong += 1
    return wrong >= PAUSE_AFTER


def failure_of(error: Exception, *, otherwise: Failure = Failure.WRONG_CREDENTIALS) -> Failure:
    """How a refused password check is recorded: `paused` when the password was not
    checked at all (`accounts.service.SignInPaused`), else `otherwise`."""
    from doorstep.accounts.service import SignInPaused  # that module builds on this one

    if isinstance(error, SignInPaused):
        return Failure.PAUSED
    if isinstance(error, twofactor.CodeRefused):
        return Failure.WRONG_CODE
    return Failure.WRONG_CREDENTIALS if isinstance(error, NotAuthenticated) else otherwise


# A changed password is a fresh start too: the wrong guesses before it were at the old one.
_SUCCESSES = ("account:signin", "account:reauth", "account:password:changed")
_ATTEMPTS = (*_SUCCESSES, "account:signin_failed", "account:reauth_failed")


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
    if subject is not None and reason == Failure.WRONG_CREDENTIALS:
        _tell_if_paused(session, user_id=subject, now=now)


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
    if reason == Failure.WRONG_CREDENTIALS:
        _tell_if_paused(session, user_id=user_id, now=now)


PAUSED_MAIL = {
    "subject": "Sign-in to your Doorstep account is paused for 15 minutes",
    "text": "Someone entered a wrong password for your account 10 times in a few minutes, "
    "so we stopped checking passwords for it for 15 minutes. If that was you, wait and try "
    "again. If it was not, someone may be guessing your password: change it to a longer "
    "one, and turn on two-step sign-in where your app offers it. Where you are already "
    "signed in, you stay signed in.",
}


def _tell_if_paused(session: Session, *, user_id: str, now: datetime) -> None:
    """The wrong password just recorded may have started a pause: email the account's
    owner, at most once per `PAUSE_WINDOW`-long slot of time (the event id names it)."""
    email = session.scalar(select(User.email).where(User.id == user_id))
    if email is None or not paused(session, user_id=user_id, now=now):
        return
    slot = int(now.timestamp() // PAUSE_WINDOW.total_seconds())
    event_id = f"{user_id}.signin_paused.{slot}"
    tx = Tx.of_session(session)
    if tx.one("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,)) is None:
        outbox.queue_mail(tx, event_id=event_id, event_type="account.signin_paused", to=email,
                          message=dict(PAUSED_MAIL), at=now)  # fmt: skip
