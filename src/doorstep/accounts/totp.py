"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP), the otpauth URI that
authenticator apps read, and recovery codes. Pure functions: the time is passed in.

Codes are HMAC-SHA1, 6 digits, 30 s steps (what every authenticator app does by
default). A code is accepted for the current step and one step either side (clock drift),
and each candidate is compared in constant time with no early exit. Replays are refused
by the caller, which keeps the newest accepted step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

DIGITS = 6
PERIOD_SECONDS = 30
DRIFT_STEPS = 1
SECRET_BYTES = 20  # 160 bits, the size RFC 4226 recommends
ISSUER = "Doorstep"
RECOVERY_CODES = 10


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def base32(secret: bytes) -> str:
    """The key as people type it into an app: base32, no padding."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def grouped(key: str) -> str:
    """`JBSW Y3DP EHPK 3PXP`: the manual key in groups of four, easier to copy by hand."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def otpauth_uri(secret: bytes, *, account: str, issuer: str = ISSUER) -> str:
    """`otpauth://totp/Issuer:account?secret=...&issuer=...` (the Key Uri Format)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode(
        {
            "secret": base32(secret),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": PERIOD_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 section 5.3: HMAC-SHA1 of the counter, dynamically truncated."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def step_at(timestamp: float) -> int:
    return int(timestamp // PERIOD_SECONDS)


def totp(secret: bytes, timestamp: float, digits: int = DIGITS) -> str:
    return hotp(secret, step_at(timestamp), digits)


def normalize(code: str) -> str:
    """What people type, spaces and dashes dropped."""
    return "".join(ch for ch in code if ch not in " -\t")


def matching_step(secret: bytes, code: str, timestamp: float) -> int | None:
    """The time step (within the drift) whose code is `code`, else None. Every candidate
    is computed and compared, so the time taken says nothing about which one matched."""
    given = normalize(code).encode()
    now = step_at(timestamp)
    found: int | None = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(secret, step).encode(), given) and found is None:
            found = step
    return found


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """`abcde-fghij`: 10 characters from an unambiguous alphabet (about 50 bits each)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(alphabet) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def recovery_digest(code: str) -> str:
    """SHA-256 of the normalized code; the codes are random enough not to need a slow
    hash, and a digest can be looked up directly."""
    return hashlib.sha256(normalize(code).lower().encode()).hexdigest()
