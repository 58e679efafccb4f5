"""Passwords: changing one while signed in, and choosing a new one by an emailed link.

Changing: the caller checks the current password (and a code, with two-step sign-in on)
with `confirm_identity`, a re-authentication recorded as such (`accounts.signins`: it
counts toward the sign-in pause like any password check), then `set_password` stores
the new argon2 hash, ends the account's other sessions and API tokens, and emails the
owner. The web page (`doorstep.web.passwords`) and `POST /v1/me/password` do this.

"Forgot your password?": `request_reset` answers nothing, so a caller answers the same
whether or not the email has an account, after the same database work. For an active
account it keeps the SHA-256 of a random 256-bit token (deleting the account's older
links) and emails `<public URL>/password/reset#<token>`: the token rides in the fragment,
which browsers never send, so it reaches no server log. At most
`auth.password_resets_per_hour` links per account are sent an hour; each works for
`auth.password_reset_ttl_seconds`. `complete_reset` spends a link: with two-step sign-in
on it also needs a code from the app or a recovery code, so a mailbox alone cannot take
the account. Then every session and token of the account ends.

Audit records (never a password, code or token):

    account:password:changed          data.via: password_change | api_password_change |
                                      password_reset; data.sessions_ended
    account:password_reset:requested  a link was emailed (subject: the account)
    account:password_reset:not_sent   data.reason: unknown_account (subject "unknown"; the
                                      email is not kept) | inactive | too_many
    account:password_reset:failed     data.reason: bad_link | expired | wrong_code |
                                      code_locked
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from doorstep import security
from doorstep.accounts import passkeys, service, signins, twofactor
from doorstep.accounts.models import PasswordReset, User
from doorstep.audit import service as audit
from doorstep.audit.models import AuditEvent
from doorstep.db import new_id
from doorstep.errors import InvalidRequest, NotAuthenticated
from doorstep.notify import outbox
from doorstep.sql import Tx

RESET_PATH = "/password/reset"
REQUESTED = "account:password_reset:requested"
CHANGED = "account:password:changed"
LINK_WINDOW = timedelta(hours=1)


class ResetLinkInvalid(InvalidRequest):
    code = "reset_link_invalid"


class ResetFailure(StrEnum):
    BAD_LINK = "bad_link"  # unknown token, or already used, or its account is inactive
    EXPIRED = "expired"
    WRONG_CODE = "wrong_code"
    CODE_LOCKED = "code_locked"


def confirm_identity(
    session: Session,
    *,
    user: User,
    password: str,
    code: str | None,
    now: datetime,
    key: bytes,
    via: signins.Via,
    client: str,
) -> signins.Failure | None:
    """Check the signed-in person's password, and a code when two-step sign-in is on;
    record the attempt (`account:reauth` or `account:reauth_failed`) in the caller's
    unit of work, which commits it either way. None when it is them, else why not."""
    failure: signins.Failure | None = None
    try:
        service.authenticate_password(session, email=user.email, password=password, now=now)
        if twofactor.is_on(session, user_id=user.id) and not (
            code and twofactor.verify(session, user_id=user.id, code=code, now=now, key=key)
        ):
            failure = signins.Failure.WRONG_CODE
    except twofactor.CodeLocked:
        failure = signins.Failure.CODE_LOCKED
    except NotAuthenticated as exc:
        failure = signins.failure_of(exc)
    actor = f"{user.role}:{user.id}"
    if failure is None:
        signins.reauthenticated(session, actor=actor, user_id=user.id, via=via, client=client,
                                now=now)  # fmt: skip
    else:
        signins.reauth_failed(session, actor=actor, user_id=user.id, via=via, client=client,
                              reason=failure, now=now)  # fmt: skip
    return failure


CHANGED_MAIL = {
    "subject": "Your Doorstep password was changed",
    "text": "The password of your Doorstep account was just changed, and every other place "
    "where the account was signed in (browsers, phones, API tokens) was signed out. If this "
    "was you, there is nothing to do. If it was not, choose a new password now with "
    '"Forgot your password?" on the sign-in page, and turn on two-step sign-in.',
}


def set_password(
    session: Session,
    *,
    user: User,
    password: str,
    now: datetime,
    via: signins.Via,
    client: str,
    keep: str | None = None,
) -> int:
    """Store `password` (already checked against the rules) as the user's new hash, end
    every session and API token of the account but the one whose digest is `keep`,
    record it and email the owner; returns how many sessions and tokens ended."""
    user.password_hash = security.hash_password(password)
    ended = service.end_sessions(session, user_id=user.id, keep=keep)
    audit.append(session, at=now, actor=f"{user.role}:{user.id}",
                 action=CHANGED, subject=user.id,
                 data={"via": via, "client": client, "sessions_ended": ended})  # fmt: skip
    outbox.queue_mail(Tx.of_session(session), event_id=new_id(f"{user.id}.password"),
                      event_type="account.password_changed", to=user.email,
                      message=dict(CHANGED_MAIL), at=now)  # fmt: skip
    return ended


def request_reset(
    session: Session,
    *,
    email: str,
    now: datetime,
    ttl: timedelta,
    per_hour: int,
    public_url: str,
    client: str,
) -> None:
    """Email a reset link to the active account with `email`, if there is one and it has
    not had `per_hour` links in the last hour. Says nothing either way."""
    session.execute(delete(PasswordReset).where(PasswordReset.expires_at <= now))
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.active:
        reason = "unknown_account" if user is None else "inactive"
        _not_sent(session, user, reason, client, now)
        return
    if _links_sent(session, user.id, now) >= per_hour:
        _not_sent(session, user, "too_many", client, now)
        return
    session.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id))
    token = security.new_token()
    session.add(
        PasswordReset(
            digest=security.token_digest(token),
            user_id=user.id,
            expires_at=now + ttl,
            created_at=now,
        )
    )
    audit.append(session, at=now, actor="anonymous", action=REQUESTED, subject=user.id,
                 data={"client": client})  # fmt: skip
    minutes = int(ttl.total_seconds() // 60)
    code_note = (
        " Two-step sign-in is on for this account, so you will also need a code from your "
        "authenticator app, or one of your recovery codes."
        if twofactor.is_on(session, user_id=user.id)
        else ""
    )
    message = {
        "subject": "Choose a new Doorstep password",
        "text": f"Someone, hopefully you, asked to reset the password of your Doorstep "
        f"account. Choose a new one here within {minutes} minutes: "
        f"{public_url.rstrip('/')}{RESET_PATH}#{token}\n\nThe link works once, and only "
        f"the newest link we sent works.{code_note} If you did not ask, ignore this email: "
        "your password stays as it is.",
    }
    outbox.queue_mail(Tx.of_session(session), event_id=new_id(f"{user.id}.reset"),
                      event_type="account.password_reset", to=user.email, message=message,
                      at=now)  # fmt: skip


def _links_sent(session: Session, user_id: str, now: datetime) -> int:
    """Reset links emailed to this account within `LINK_WINDOW` (from the audit log, so
    the limit holds across restarts and service processes)."""
    count = session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.subject == user_id,
            AuditEvent.action == REQUESTED,
            AuditEvent.ts > now - LINK_WINDOW,
        )
    )
    return int(count or 0)


def _not_sent(session: Session, user: User | None, reason: str, client: str, now: datetime) -> None:
    audit.append(session, at=now, actor="anonymous", action="account:password_reset:not_sent",
                 subject=user.id if user is not None else signins.UNKNOWN,
                 data={"client": client, "reason": reason})  # fmt: skip


def reset_account(session: Session, *, token: str, now: datetime, client: str) -> User:
    """The active account whose unexpired link this is; `ResetLinkInvalid` (recorded)
    otherwise. Spends nothing."""
    row = session.get(PasswordReset, security.token_digest(token)) if token else None
    user = session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or not user.active or row.expires_at <= now:
        expired = row is not None and row.expires_at <= now
        reason = ResetFailure.EXPIRED if expired else ResetFailure.BAD_LINK
        _reset_failed(session, user, reason, client, now)
        raise ResetLinkInvalid("this link is unknown, used or expired; ask for a new one")
    return user


def complete_reset(
    session: Session,
    *,
    token: str,
    password: str,
    code: str | None,
    now: datetime,
    key: bytes,
    client: str,
) -> User:
    """Set a new password (already checked against the rules) with an emailed link, and
    a code when the account has two-step sign-in on; the link is spent, the account's
    other links deleted, every session and token of the account ended, and every passkey
    removed (`passkeys.remove_all`).

    Raises `ResetLinkInvalid`, `twofactor.CodeRefused` or `twofactor.CodeLocked`, having
    recorded the failure and changed nothing else (a wrong code counts toward the code
    lock, and leaves the link usable)."""
    user = reset_account(session, token=token, now=now, client=client)
    if twofactor.is_on(session, user_id=user.id):
        try:
            good = bool(code) and twofactor.verify(
                session, user_id=user.id, code=code or "", now=now, key=key
            )
        except twofactor.CodeLocked:
            _reset_failed(session, user, ResetFailure.CODE_LOCKED, client, now)
            raise
        if not good:
            _reset_failed(session, user, ResetFailure.WRONG_CODE, client, now)
            raise twofactor.CodeRefused("two-step sign-in is on: a right code is needed too")
    spent = session.execute(
        delete(PasswordReset).where(PasswordReset.digest == security.token_digest(token))
    )
    if not getattr(spent, "rowcount", 0):  # spent meanwhile by another request
        raise ResetLinkInvalid("this link is unknown, used or expired; ask for a new one")
    session.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id))
    set_password(session, user=user, password=password, now=now,
                 via=signins.Via.PASSWORD_RESET, client=client)  # fmt: skip
    # Reset: the account may have been someone else's for a while, and a passkey they
    # added would outlive the new password.
    passkeys.remove_all(session, user_id=user.id, actor=f"{user.role}:{user.id}",
                        why="password_reset", now=now)  # fmt: skip
    return user


def _reset_failed(
    session: Session, user: User | None, reason: ResetFailure, client: str, now: datetime
) -> None:
    audit.append(session, at=now, actor="anonymous", action="account:password_reset:failed",
                 subject=user.id if user is not None else signins.UNKNOWN,
                 data={"client": client, "reason": reason})  # fmt: skip
