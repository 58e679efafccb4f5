"""Account tables."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime


class Role(StrEnum):
    RESIDENT = "resident"
    COURIER = "courier"
    OPERATOR = "operator"
    GUEST = "guest"  # invited by a resident; enters on an access grant
    WORKER = "worker"  # a service provider's admin or worker


class PrincipalKind(StrEnum):
    USER = "user"
    CLIENT = "client"


class Carrier(Base):
    __tablename__ = "carriers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    carrier_id: Mapped[str | None] = mapped_column(ForeignKey("carriers.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiClient(Base):
    """A carrier's machine credential (OAuth2 client credentials)."""

    __tablename__ = "api_clients"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    carrier_id: Mapped[str] = mapped_column(ForeignKey("carriers.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccessToken(Base):
    __tablename__ = "access_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_kind: Mapped[str] = mapped_column(String(16))
    principal_id: Mapped[str] = mapped_column(String(32), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TotpCredential(Base):
    """One authenticator app per user (RFC 6238, SHA-1, 6 digits, 30 s). Unconfirmed until
    the user typed a code from it; only a confirmed one is asked for at sign-in."""

    __tablename__ = "totp_credentials"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    # Sealed (`accounts.twofactor.seal`, 49 bytes); the declared length is not enforced
    # (SQLite BLOB, PostgreSQL bytea), and an older row may still hold the 20 plain bytes.
    secret: Mapped[bytes] = mapped_column(LargeBinary(32))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The newest time step accepted: a code is good once (RFC 6238 section 5.2).
    last_step: Mapped[int | None] = mapped_column(Integer)
    # Wrong codes in a row, and until when further codes are refused.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RecoveryCode(Base):
    """A single-use code for when the authenticator is lost; only its SHA-256 is kept."""

    __tablename__ = "recovery_codes"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PasswordReset(Base):
    """An emailed link to choose a new password (`accounts.passwords`). Only the SHA-256
    of its token is kept. A newer request deletes the account's older links, a reset
    deletes them all, and an expired one goes at the next request for any account."""

    __tablename__ = "password_resets"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Passkey(Base):
    """A resident's passkey (a WebAuthn discoverable credential, `accounts.passkeys`):
    signing in with it counts as password and second step at once, since the
    authenticator verified the user (screen lock, fingerprint) before signing."""

    __tablename__ = "passkeys"

    # The credential ID, base64url (at most 1023 bytes, so 1364 characters).
    id: Mapped[str] = mapped_column(String(1364), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key, as registered
    # The authenticator's signature counter (a uint32; 0 for one that keeps none).
    sign_count: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(60))
    transports: Mapped[str] = mapped_column(String(200), default="")  # comma-separated
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PasskeyChallenge(Base):
    """A WebAuthn challenge handed out and not yet answered: single-use (taken by
    deleting it), bound to one browser session or visitor cookie, expiring in minutes."""

    __tablename__ = "passkey_challenges"

    # SHA-256 (hex) of the purpose and the browser it was given to; never the cookie.
    binding: Mapped[str] = mapped_column(String(64), primary_key=True)
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
