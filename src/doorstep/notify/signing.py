"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body.

The request carries `Doorstep-Signature: t=<unix seconds>,v1=<hex digest>` where the
digest is HMAC-SHA256(secret, "<t>." + body). A receiver recomputes it over the raw body
it got, compares in constant time, and refuses timestamps further than `tolerance` from
its clock, so a captured request cannot be replayed later. `Doorstep-Event-Id` is stable
across retries: a receiver that stores the ids it has processed handles each event once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "Doorstep-Signature"
EVENT_ID_HEADER = "Doorstep-Event-Id"
EVENT_TYPE_HEADER = "Doorstep-Event-Type"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The request is not signed by the holder of the secret, or is too old."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Doorstep-Signature` header value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a received signature; returns its timestamp or raises SignatureError."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        raise SignatureError("signature header has no single timestamp")
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        raise SignatureError("signature timestamp is outside the tolerance")
    expected = _digest(secret, body, timestamp)
    # Any v1 may match (a receiver may be sent several during a secret rotation).
    if not any(hmac.compare_digest(expected, given) for given in fields.get("v1", [])):
        raise SignatureError("signature does not match")
    return timestamp


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
