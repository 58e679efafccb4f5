"""Mosquitto 2.0 password hashes, made without shelling out to `mosquitto_passwd`.

Wire format of one password-file value (what `mosquitto_passwd` writes after `user:`):

    $7$<iterations>$<base64 salt>$<base64 hash>

`7` names PBKDF2-HMAC-SHA512; the salt is 12 random bytes, the hash the full 64-byte
digest, both in standard base64 with padding. The broker reads the iteration count from
the line, so any count works; 101 is what `mosquitto_passwd` 2.0 writes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

SALT_BYTES = 12
DEFAULT_ITERATIONS = 101
HASH_PATTERN = re.compile(r"^\$7\$[1-9][0-9]*\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$")


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> str:
    """The `$7$` value Mosquitto 2.0 accepts for `password`."""
    if iterations < 1:
        raise ValueError("iterations must be positive")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def new_password() -> str:
    """A fresh random password for a hub or the service (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
