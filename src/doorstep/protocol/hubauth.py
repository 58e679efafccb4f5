"""HTTP requests signed by a hub's own Ed25519 key (the one pinned at enrollment).

The hub talks to the service over MQTT for commands and events; clip uploads and live
frames go over HTTP (`hub.uploader`, `hub.liveview`). Each such request carries

    Doorstep-Hub-Auth: hub=<hub id>,t=<unix seconds>,sig=<base64url Ed25519 signature>

over the bytes

    "doorstep-hub-request-v2\\n" hub id "\\n" method "\\n" path-and-query "\\n" t "\\n"
    hex(SHA-256(body))

The service checks the signature against the named hub's `hubs.public_key`, and `t`
against its own clock within `FRESHNESS_SECONDS` either way. The hub id is signed because
two hubs can share a public key (a data directory enrolled again keeps its key, and anyone
may enroll a hub under a public key they have seen): a request one signed must not pass
as the other's by rewriting the header. No secret travels and a captured request is good
for that one method, path and body for a minute; every route it reaches is idempotent
(an upload chunk names its offset, a completion its checksum), so replaying it within
that minute changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from doorstep.protocol.messages import b64decode, b64encode

HEADER = "doorstep-hub-auth"
FRESHNESS_SECONDS = 60.0
_CONTEXT = b"doorstep-hub-request-v2"
_HUB_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class HubAuthError(Exception):
    """The request is not signed by the hub it names (or not now)."""


@dataclass(frozen=True)
class SignedBy:
    hub_id: str
    at: int
    signature: bytes


def message(hub_id: str, method: str, path: str, at: int, body_digest: str) -> bytes:
    parts = (hub_id, method.upper(), path, str(at), body_digest)
    return b"\n".join([_CONTEXT, *(part.encode() for part in parts)])


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sign(
    key: Ed25519PrivateKey, *, hub_id: str, method: str, path: str, body: bytes, at: int
) -> str:
    """The header value for one request."""
    signature = key.sign(message(hub_id, method, path, at, body_digest(body)))
    return f"hub={hub_id},t={at},sig={b64encode(signature)}"


def parse(header: str) -> SignedBy:
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    try:
        hub_id, at, signature = fields["hub"], int(fields["t"]), b64decode(fields["sig"])
    except (KeyError, ValueError) as exc:
        raise HubAuthError("malformed hub signature header") from exc
    if not _HUB_ID.fullmatch(hub_id) or len(signature) != 64:
        raise HubAuthError("malformed hub signature header")
    return SignedBy(hub_id, at, signature)


def verify(
    signed: SignedBy,
    public_key: bytes,
    *,
    method: str,
    path: str,
    digest: str,
    now: float,
) -> None:
    """HubAuthError unless `signed` is the hub's signature over this request, made within
    `FRESHNESS_SECONDS` of `now`."""
    if abs(now - signed.at) > FRESHNESS_SECONDS:
        raise HubAuthError("hub signature is stale or from the future")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signed.signature, message(signed.hub_id, method, path, signed.at, digest)
        )
    except (InvalidSignature, ValueError) as exc:
        raise HubAuthError("hub signature does not verify") from exc
