"""The resident's second factor: an authenticator app (TOTP, `doorstep.accounts.totp`) and
single-use recovery codes.

Enrolling makes an unconfirmed credential (the key shown once, as an otpauth URI and as a
manual key); typing a code from the app confirms it, turns it on and hands out ten
recovery codes, shown once and kept only as SHA-256 digests; `turn_on` also ends the
account's other sessions and API tokens. The web's account security page and
`/v1/me/two-factor` (`accounts.router`) do this. Once on, sign-in and
re-authentication ask for a code. Wrong codes count: after `MAX_FAILURES` in a row the
account takes no code for `LOCK_SECONDS` (whatever the client address), and a code is
good once: the newest accepted time step is kept and older or equal steps are refused.

The app's key is kept sealed (AES-256-GCM under `<data dir>/keys/totp.key`, bound to the
user id), so a copy of the database alone cannot make codes. A key stored in plain by an
earlier version is still read, and sealed at its next accepted code.

Audit records (subject: the account; never the key, the otpauth URI or a code), in the
caller's unit of work, which commits them also when it refuses the request. Those of the
set-up and of turning it off carry the caller's `via` (`accounts.signins.Via`) and
`client` address, as sign-in records do; so does a lock caused by the set-up's code:

    account:totp_setup:started  a new key was made (one still waiting is replaced)
    account:totp_setup:failed   data.reason: wrong_code | code_locked (the confirming code)
    account:totp:on             the set-up was confirmed
    account:totp:locked         actor `system`: the `MAX_FAILURES`th wrong code in a row,
                                wherever it was typed (set-up, sign-in, re-authentication,
                                password reset); data.until: when codes are taken again
    account:totp:off            two-step sign-in was turned off
    account:recovery_code:used
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from doorstep.accounts import service, totp
from doorstep.accounts.models import RecoveryCode, TotpCredential, User
from doorstep.audit import service as audit
from doorstep.errors import Conflict, NotAuthenticated, TooManyRequests

if TYPE_CHECKING:  # `accounts.signins` builds on this module
    from doorstep.accounts.signins import Via

MAX_FAILURES = 5
LOCK_SECONDS = 300
KEY_FILE = "totp.key"
_SEALED = b"\x01"  # version byte of a sealed key
_SEALED_BYTES = 1 + 12 + totp.SECRET_BYTES + 16
_AAD = b"doorstep totp key v1 "


class SealBroken(Exception):
    """A stored key that does not open with this deployment's key file."""


def seal(key: bytes, user_id: str, secret: bytes) -> bytes:
    nonce = os.urandom(12)
    return _SEALED + nonce + AESGCM(key).encrypt(nonce, secret, _AAD + user_id.encode())


def unseal(key: bytes, user_id: str, stored: bytes) -> bytes:
    """The app's key from what is stored (sealed, or in plain from an earlier version)."""
    if len(stored) == totp.SECRET_BYTES:
        return stored
    if len(stored) != _SEALED_BYTES or stored[:1] != _SEALED:
        raise SealBroken("the stored authenticator key is malformed")
    try:
        return AESGCM(key).decrypt(stored[1:13], stored[13:], _AAD + user_id.encode())
    except InvalidTag as exc:
        raise SealBroken("the stored authenticator key does not open with totp.key") from exc


class CodeLocked(TooManyRequests):
    code = "code_locked"


class SetUpFailure(StrEnum):
    WRONG_CODE = "wrong_code"
    CODE_LOCKED = "code_locked"


class CodeRefused(NotAuthenticated):
    """The password was right, but two-step sign-in is on and the code was missing or
    wrong (or already used)."""


def credential(session: Session, *, user_id: str) -> TotpCredential | None:
    return session.get(TotpCredential, user_id)


def is_on(session: Session, *, user_id: str) -> bool:
    found = credential(session, user_id=user_id)
    return found is not None and found.confirmed_at is not None


def recovery_left(session: Session, *, user_id: str) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return int(count or 0)


def start_enrollment(
    session: Session, *, user: User, now: datetime, key: bytes,
    via: Via | None = None, client: str | None = None,
) -> bytes:  # fmt: skip
    """A new key for the authenticator app (replacing an unconfirmed one), stored sealed
    with `key`; returned in plain to be shown once. `via` and `client`: where the
    request came from, for the audit record."""
    found = credential(session, user_id=user.id)
    if found is not None and found.confirmed_at is not None:
        raise Conflict("two-step sign-in is already on; turn it off first to change apps")
    if found is not None:
        session.delete(found)
        session.flush()
    secret = totp.new_secret()
    session.add(
        TotpCredential(
            user_id=user.id,
            secret=seal(key, user.id, secret),
            confirmed_at=None,
            last_step=None,
            failures=0,
            locked_until=None,
            created_at=now,
        )
    )
    audit.append(session, at=now, actor=f"{user.role}:{user.id}",
                 action="account:totp_setup:started", subject=user.id,
                 data=_origin(via, client))  # fmt: skip
    return secret


def pending_secret(session: Session, *, user_id: str, key: bytes) -> bytes | None:
    """The key of an enrollment waiting for its first code (to show it again)."""
    found = credential(session, user_id=user_id)
    if found is None or found.confirmed_at is not None:
        return None
    return unseal(key, user_id, found.secret)


def confirm(
    session: Session, *, user: User, code: str, now: datetime, key: bytes,
    via: Via | None = None, client: str | None = None,
) -> list[str] | None:  # fmt: skip
    """Turn TOTP on if `code` comes from the enrolled key; the new recovery codes, or
    None for a wrong code. Wrong codes count toward the lock as at sign-in (`verify`):
    a token alone must not let anyone guess the set-up's code. Raises `CodeLocked`
    while locked. A refusal is recorded (`account:totp_setup:failed`) for the caller
    to commit before it answers."""
    found = credential(session, user_id=user.id)
    if found is None or found.confirmed_at is not None:
        raise Conflict("start again: there is no authenticator waiting to be confirmed")
    origin = _origin(via, client)
    try:
        _refuse_while_locked(found, now)
    except CodeLocked:
        _set_up_failed(session, user, SetUpFailure.CODE_LOCKED, now, origin)
        raise
    right = _check_totp(found, code, now, key)
    if not right:  # recorded before the count, which may lock
        _set_up_failed(session, user, SetUpFailure.WRONG_CODE, now, origin)
    if not _counted(session, found, right, now, origin):
        return None
    found.confirmed_at = now
    codes = _replace_recovery_codes(session, user.id, now)
    audit.append(
        session,
        at=now,
        actor=f"resident:{user.id}",
        action="account:totp:on",
        subject=user.id,
        data=origin,
    )
    return codes


def _origin(via: Via | None, client: str | None) -> dict[str, str]:
    """A record's `via` and `client`, those known (tests may call without them)."""
    return {name: value for name, value in (("via", via), ("client", client)) if value}


def _set_up_failed(
    session: Session, user: User, reason: SetUpFailure, now: datetime, origin: dict[str, str]
) -> None:
    audit.append(session, at=now, actor=f"{user.role}:{user.id}",
                 action="account:totp_setup:failed", subject=user.id,
                 data={**origin, "reason": reason})  # fmt: skip


@dataclass(frozen=True, slots=True)
class TurnedOn:
    recovery_codes: list[str]
    sessions_ended: int


def turn_on(
    session: Session, *, user: User, code: str, now: datetime, key: bytes, keep: str,
    via: Via | None = None, client: str | None = None,
) -> TurnedOn | None:  # fmt: skip
    """`confirm`, then end every session and API token of the account but the one whose
    digest is `keep`: one that began on the password alone must not outlast the second
    factor (`account:sessions:revoked`, `why` `totp_on`). None for a wrong code."""
    codes = confirm(session, user=user, code=code, now=now, key=key, via=via, client=client)
    if codes is None:
        return None
    ended = service.end_sessions(session, user_id=user.id, keep=keep)
    audit.append(session, at=now, actor=f"{user.role}:{user.id}",
                 action="account:sessions:revoked", subject=user.id,
                 data={"sessions": ended, "kept_current": True, "why": "totp_on"})  # fmt: skip
    return TurnedOn(codes, ended)


def verify(session: Session, *, user_id: str, code: str, now: datetime, key: bytes) -> bool:
    """Check a code from the app, or a recovery code (used up by this), for a user whose
    TOTP is on. Raises `CodeLocked` while locked after too many wrong codes."""
    found = credential(session, user_id=user_id)
    if found is None or found.confirmed_at is None:
        return True  # nothing to ask for
    _refuse_while_locked(found, now)
    right = _check_totp(found, code, now, key) or _use_recovery_code(session, user_id, code, now)
    return _counted(session, found, right, now)


def _refuse_while_locked(found: TotpCredential, now: datetime) -> None:
    if found.locked_until is not None and found.locked_until > now:
        raise CodeLocked("too many wrong codes; wait a few minutes, then try again")


def _counted(
    session: Session,
    found: TotpCredential,
    right: bool,
    now: datetime,
    origin: dict[str, str] | None = None,
) -> bool:
    """`right`, once counted: a right code clears the count; a wrong one adds to it, and
    the `MAX_FAILURES`th in a row locks the account's codes for `LOCK_SECONDS`
    (`account:totp:locked`)."""
    if right:
        found.failures = 0
        found.locked_until = None
        return True
    found.failures += 1
    if found.failures >= MAX_FAILURES:
        found.failures = 0
        found.locked_until = now + timedelta(seconds=LOCK_SECONDS)
        until = found.locked_until.astimezone(UTC).isoformat()
        audit.append(session, at=now, actor="system", action="account:totp:locked",
                     subject=found.user_id, data={**(origin or {}), "until": until})  # fmt: skip
    return False


def turn_off(
    session: Session, *, user: User, now: datetime,
    via: Via | None = None, client: str | None = None,
) -> None:  # fmt: skip
    """Drop the app's key (or a set-up still waiting) and the recovery codes; recorded
    only when two-step sign-in was on, so the history never shows an "off" that was not."""
    was_on = is_on(session, user_id=user.id)
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))
    if not was_on:
        return
    audit.append(
        session,
        at=now,
        actor=f"resident:{user.id}",
        action="account:totp:off",
        subject=user.id,
        data=_origin(via, client),
    )


def _check_totp(found: TotpCredential, code: str, now: datetime, key: bytes) -> bool:
    secret = unseal(key, found.user_id, found.secret)
    step = totp.matching_step(secret, code, now.timestamp())
    if step is None or (found.last_step is not None and step <= found.last_step):
        return False
    found.last_step = step
    if len(found.secret) == totp.SECRET_BYTES:  # stored in plain by an earlier version
        found.secret = seal(key, found.user_id, secret)
    return True


def _use_recovery_code(session: Session, user_id: str, code: str, now: datetime) -> bool:
    if len(totp.normalize(code)) != 10:
        return False
    row = session.get(RecoveryCode, totp.recovery_digest(code))
    if row is None or row.user_id != user_id or row.used_at is not None:
        return False
    row.used_at = now
    audit.append(
        session,
        at=now,
        actor=f"resident:{user_id}",
        action="account:recovery_code:used",
        subject=user_id,
        data={},
    )
    return True


def _replace_recovery_codes(session: Session, user_id: str, now: datetime) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = totp.new_recovery_codes()
    for code in codes:
        session.add(
            RecoveryCode(
                digest=totp.recovery_digest(code), user_id=user_id, used_at=None, created_at=now
            )
        )
    return codes
