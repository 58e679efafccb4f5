"""Carriers' webhook signing secrets at rest: sealed, so a copy of the database alone
cannot sign webhooks for any carrier.

As residents' authenticator keys are (`accounts.twofactor`): AES-256-GCM under a key file
of this deployment, `<data dir>/keys/webhook-secrets.key`, bound to the endpoint's id (a
sealed secret copied onto another endpoint does not open). Stored as
`sealed1.<base64url of nonce, ciphertext and tag>`. A secret an earlier version stored in
plain (`whsec_...`) is still read, and sealed by the dispatcher when it starts.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "webhook-secrets.key"
PLAIN_PREFIX = "whsec_"  # `signing.new_secret`'s, so what an earlier version stored
_SEALED = "sealed1."
_AAD = b"doorstep webhook secret v1 "


class SealBroken(Exception):
    """A stored secret that does not open with this deployment's key file."""


def seal(key: bytes, endpoint_id: str, secret: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), _AAD + endpoint_id.encode())
    return _SEALED + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def is_plain(stored: str) -> bool:
    """Stored in plain by an earlier version."""
    return stored.startswith(PLAIN_PREFIX)


def unseal(key: bytes | None, endpoint_id: str, stored: str) -> str:
    """The secret from what is stored (sealed, or in plain from an earlier version); a
    sealed one needs `key`."""
    if is_plain(stored):
        return stored
    if key is None or not stored.startswith(_SEALED):
        raise SealBroken("the stored webhook secret is malformed, or there is no key to open it")
    try:
        raw = base64.urlsafe_b64decode(stored.removeprefix(_SEALED).encode("ascii"))
        opened = AESGCM(key).decrypt(raw[:12], raw[12:], _AAD + endpoint_id.encode())
    except (ValueError, binascii.Error, InvalidTag) as exc:
        raise SealBroken(f"the stored webhook secret does not open with {KEY_FILE}") from exc
    return opened.decode()
