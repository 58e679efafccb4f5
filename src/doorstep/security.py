"""Secrets at rest and in flight: password hashing, opaque tokens, constant-time checks.

Passwords and API client secrets are hashed with argon2id. Bearer tokens and claim codes
are high-entropy random strings, so they are stored as SHA-256 digests and looked up by
digest; the plain value exists only in the response that hands it out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

CLAIM_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the account does not exist, so that a wrong user
    name costs the same time as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_claim_code() -> str:
    """12 characters from a 31-letter alphabet (~59 bits), grouped for reading aloud."""
    raw = "".join(secrets.choice(CLAIM_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_claim_code(code: str) -> str:
    raw = code.replace("-", "").replace(" ", "").upper()
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
