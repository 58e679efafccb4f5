"""Seal a small secret (a keypad PIN) to one hub, so only that hub can read it.

The service never sends a PIN in the clear, not even over the authenticated broker: it
seals each one to the hub's X25519 key (sent once, at enrollment, as `seal_key`), bound
to the hub and to the credential it belongs to. Wire format (ECIES-like, one shot):

    sealed = 0x01 | ephemeral X25519 public (32) | nonce (12) | AES-256-GCM ciphertext+tag

    key = HKDF-SHA256(X25519(ephemeral, recipient),
                      salt = ephemeral public || recipient public,
                      info = b"doorstep seal v1")                        32 bytes
    AAD = b"doorstep seal v1|" + hub_id + b"|" + context                 context = credential id

The AAD binds a sealed PIN to one hub and one credential: moved to another hub's
document, or to another credential of the same hub, it does not open. Every failure is
one `SealError` whose message never holds a secret. The algorithms are fixed by the
version byte; there is no negotiation.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MAX_PLAINTEXT_BYTES",
    "SealError",
    "generate_key",
    "open_sealed",
    "private_key_bytes",
    "private_key_from_bytes",
    "public_key_bytes",
    "seal",
]

VERSION = 0x01
INFO = b"doorstep seal v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_BYTES + NONCE_BYTES
MAX_PLAINTEXT_BYTES = 256  # a PIN is at most a few digits; anything larger is not ours
MAX_SEALED_BYTES = HEADER_BYTES + MAX_PLAINTEXT_BYTES + TAG_BYTES


class SealError(Exception):
    """A sealed value could not be made or opened. The message names no secret."""


def generate_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_key_bytes(private: X25519PrivateKey) -> bytes:
    """The raw 32-byte public key: what the hub sends as `seal_key` at enrollment."""
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def private_key_bytes(private: X25519PrivateKey) -> bytes:
    """The raw 32-byte private key, as the hub keeps it in `seal.key`."""
    return private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    if len(raw) != KEY_BYTES:
        raise SealError("a seal key is 32 raw bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def seal(recipient_public: bytes, plaintext: bytes, *, hub_id: str, context: str) -> bytes:
    """Seal `plaintext` to the hub whose raw X25519 public key is `recipient_public`."""
    if len(recipient_public) != KEY_BYTES:
        raise SealError("the recipient key is not 32 raw bytes")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise SealError(f"a sealed value holds at most {MAX_PLAINTEXT_BYTES} bytes")
    try:
        recipient = X25519PublicKey.from_public_bytes(recipient_public)
        ephemeral = X25519PrivateKey.generate()
        shared = ephemeral.exchange(recipient)
    except ValueError as exc:  # a low-order point gives an all-zero secret; refused
        raise SealError("the recipient key is not usable") from exc
    ephemeral_public = public_key_bytes(ephemeral)
    key = _derive(shared, ephemeral_public, recipient_public)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, _aad(hub_id, context))
    return bytes([VERSION]) + ephemeral_public + nonce + ciphertext


def open_sealed(private: X25519PrivateKey, sealed: bytes, *, hub_id: str, context: str) -> bytes:
    """Open a value sealed to `private`'s hub for this `hub_id` and `context`."""
    if not HEADER_BYTES + TAG_BYTES <= len(sealed) <= MAX_SEALED_BYTES:
        raise SealError("sealed value has the wrong length")
    if sealed[0] != VERSION:
        raise SealError("unknown seal version")
    ephemeral_public = sealed[1 : 1 + KEY_BYTES]
    nonce = sealed[1 + KEY_BYTES : HEADER_BYTES]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError as exc:
        raise SealError("sealed value does not open") from exc
    key = _derive(shared, ephemeral_public, public_key_bytes(private))
    try:
        return AESGCM(key).decrypt(nonce, sealed[HEADER_BYTES:], _aad(hub_id, context))
    except InvalidTag as exc:
        raise SealError("sealed value does not open") from exc


def _derive(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=ephemeral_public + recipient_public,
        info=INFO,
    )
    return hkdf.derive(shared)


def _aad(hub_id: str, context: str) -> bytes:
    return INFO + b"|" + hub_id.encode() + b"|" + context.encode()
