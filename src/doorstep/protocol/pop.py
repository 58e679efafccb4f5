"""Proof of possession: the courier's phone key, named in the grant, signs the hub's challenge.

The phone makes an ECDSA P-256 key with WebCrypto (non-extractable) and registers its
public half (a JWK) with the service at sign-in. A grant for that courier names the key
in its `cnf` claim (RFC 8747: `8: {1: COSE_Key}`), with the point compressed to keep the
grant small: `{1: 2 /EC2/, -1: 1 /P-256/, -2: x (32 bytes), -3: sign of y (bool)}`.

Before unlocking, the hub sends a fresh random challenge for the entry; the phone signs

    "doorstep-pop-v1" 0x00 entry_id 0x00 audience 0x00 challenge

with ES256 (SHA-256; the 64-byte r||s form WebCrypto produces) and the hub checks it with
the grant's key. A grant copied off the wire is useless without the phone, and a
signature is good for one challenge, which the hub forgets after one use or a short time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

CONTEXT = b"doorstep-pop-v1"
CHALLENGE_BYTES = 16
COSE_KTY, COSE_CRV, COSE_X, COSE_Y = 1, -1, -2, -3
KTY_EC2, CRV_P256 = 2, 1
CNF_COSE_KEY = 1
COMPRESSED_POINT_BYTES = 33


class ProofError(ValueError):
    """A key or proof that cannot be used; the message says which part is wrong."""


def cose_key(compressed_point: bytes) -> dict[int, Any]:
    """The grant's `cnf` value for a P-256 key given as a SEC1 compressed point."""
    if len(compressed_point) != COMPRESSED_POINT_BYTES or compressed_point[0] not in (2, 3):
        raise ProofError("not a compressed P-256 point")
    return {
        CNF_COSE_KEY: {
            COSE_KTY: KTY_EC2,
            COSE_CRV: CRV_P256,
            COSE_X: compressed_point[1:],
            COSE_Y: compressed_point[0] == 3,
        }
    }


def point_from_cnf(cnf: Any) -> bytes:
    """The compressed point named by a `cnf` claim; ProofError for anything else (another
    key type or curve, an uncompressed or malformed key, extra members)."""
    if not isinstance(cnf, Mapping) or set(cnf) != {CNF_COSE_KEY}:
        raise ProofError("cnf must hold exactly one COSE_Key")
    key = cnf[CNF_COSE_KEY]
    if not isinstance(key, Mapping) or set(key) != {COSE_KTY, COSE_CRV, COSE_X, COSE_Y}:
        raise ProofError("cnf key must be a compressed EC2 key")
    if key[COSE_KTY] != KTY_EC2 or key[COSE_CRV] != CRV_P256:
        raise ProofError("cnf key must be EC2 on P-256")
    x, y = key[COSE_X], key[COSE_Y]
    if not isinstance(x, bytes) or len(x) != 32 or not isinstance(y, bool):
        raise ProofError("cnf key must carry a 32-byte x and the sign of y")
    point = bytes([3 if y else 2]) + x
    public_key(point)  # on the curve, or ProofError
    return point


def public_key(compressed_point: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), compressed_point)
    except ValueError as exc:
        raise ProofError("not a point on P-256") from exc


def compressed(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def from_jwk(jwk: Mapping[str, Any]) -> bytes:
    """A registered phone key: a public P-256 JWK (what WebCrypto exports), checked to be
    on the curve; returned as a compressed point. Private members are refused."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ProofError("the key must be an EC P-256 JWK")
    if "d" in jwk:
        raise ProofError("send the public key only")
    try:
        x, y = _b64(jwk["x"]), _b64(jwk["y"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ProofError("x and y must be base64url") from exc
    if len(x) != 32 or len(y) != 32:
        raise ProofError("x and y must be 32 bytes each")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
    except ValueError as exc:
        raise ProofError("not a point on P-256") from exc
    return compressed(key)


def message(entry_id: str, audience: str, challenge: bytes) -> bytes:
    """The bytes the phone signs for one challenge of one entry at one door."""
    return b"\x00".join((CONTEXT, entry_id.encode(), audience.encode(), challenge))


def sign(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ES256 in WebCrypto's form (r||s, 64 bytes): what a phone would send."""
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(compressed_point: bytes, data: bytes, signature: bytes) -> bool:
    """True only for a valid ES256 signature (r||s) by this key over exactly `data`."""
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        public_key(compressed_point).verify(
            encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ProofError, ValueError):
        return False
    return True


def jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64e(numbers.x.to_bytes(32, "big")),
        "y": _b64e(numbers.y.to_bytes(32, "big")),
    }


def _b64(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError("not text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
