"""Grant tokens: CWT (RFC 8392) claims in a COSE_Sign1 (RFC 9052) signed with EdDSA.

The service issues one grant per authorized entry; the hub verifies it offline against the
issuer keys it trusts: pinned at enrollment, then replaced by those of each desired
document it applies (`protocol.shadow`, `GrantVerifier.set_issuer_keys`). Wire format
(CBOR, integer claim keys):

    18([ << {1: -8 /alg EdDSA/, 4: kid} >>, {}, << claims >>, signature(64) ])

    claims = {
      1: iss        text   "doorstep"
      3: aud        text   "<hub id>/<access point>"   the one door this grant opens
      4: exp        uint   epoch seconds
      5: nbf        uint   epoch seconds
      6: iat        uint   epoch seconds
      7: cti        bstr   16 random bytes; the hub accepts each cti once, ever
      8: cnf        map    optional: the courier's phone key (`protocol.pop`); when present
                           the hub unlocks only with that key's signature of its challenge
      9: scope      text   space-separated actions, e.g. "unlock"
      -70001: ent   text   the entry this grant belongs to (private-use claim)
    }

A leading CWT tag 61 is accepted and ignored. Verification pins the algorithm (only
EdDSA, named in the protected header), requires a known `kid`, checks the signature with
`cwt`, then every claim against a clock the caller passes in. Replay (cti reuse) is the
hub's job: it needs durable storage, which this module does not have.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cwt import COSE, COSEKey

from doorstep.protocol import pop
from doorstep.protocol.codes import Reason

ISSUER = "doorstep"
ALG_EDDSA = -8
CWT_TAG = 61
COSE_SIGN1_TAG = 18
CLAIM_ISS, CLAIM_AUD, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI, CLAIM_SCOPE = 1, 3, 4, 5, 6, 7, 9
CLAIM_CNF = 8
CLAIM_ENTRY = -70001
TOKEN_ID_BYTES = 16
MAX_TOKEN_BYTES = 1024
DEFAULT_LEEWAY_SECONDS = 30

Clock = Callable[[], float]
_T = TypeVar("_T")


class GrantRefused(Exception):
    """The token is not acceptable; `reason` says why (a stable code)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GrantClaims:
    audience: str
    not_before: int
    expires: int
    issued_at: int
    token_id: bytes
    scope: tuple[str, ...]
    entry_id: str
    issuer: str = ISSUER
    # The phone key (SEC1 compressed P-256 point) that must sign the hub's challenge.
    pop_key: bytes | None = None

    @property
    def hub_id(self) -> str:
        return self.audience.split("/", 1)[0]

    @property
    def access_point(self) -> str:
        return self.audience.split("/", 1)[1] if "/" in self.audience else ""

    def to_cbor_map(self) -> dict[int, Any]:
        claims: dict[int, Any] = {
            CLAIM_ISS: self.issuer,
            CLAIM_AUD: self.audience,
            CLAIM_EXP: self.expires,
            CLAIM_NBF: self.not_before,
            CLAIM_IAT: self.issued_at,
            CLAIM_CTI: self.token_id,
            CLAIM_SCOPE: " ".join(self.scope),
            CLAIM_ENTRY: self.entry_id,
        }
        if self.pop_key is not None:
            claims[CLAIM_CNF] = pop.cose_key(self.pop_key)
        return claims


def audience_for(hub_id: str, access_point: str) -> str:
    return f"{hub_id}/{access_point}"


def new_token_id() -> bytes:
    """Time-ordered (milliseconds, then 80 random bits), like `doorstep.db.ordered_hex`:
    the service's unique index on token ids and the hub's used-token set both grow at
    their right edge."""
    return (time.time_ns() // 1_000_000).to_bytes(6, "big") + secrets.token_bytes(
        TOKEN_ID_BYTES - 6
    )


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """A short, stable key id derived from the public key (RFC 7638 in spirit)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:12]


def public_key_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class GrantSigner:
    """Signs grants with one Ed25519 issuer key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.kid = key_id_for(private_key.public_key())
        self.private_key = private_key  # also signs each hub's shadow document
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._key = COSEKey.from_pem(pem, alg="EdDSA", kid=self.kid)
        self._cose = COSE.new(alg_auto_inclusion=True, kid_auto_inclusion=False)
        self._protected = {1: ALG_EDDSA, 4: self.kid.encode()}

    def sign(self, claims: GrantClaims) -> bytes:
        payload = cbor2.dumps(claims.to_cbor_map())
        token = self._cose.encode_and_sign(payload, self._key, protected=self._protected)
        assert isinstance(token, bytes)
        return token


class GrantVerifier:
    """Checks grants for one hub, offline, against the issuer public keys it trusts."""

    def __init__(
        self,
        *,
        hub_id: str,
        issuer_keys: Mapping[str, bytes],
        clock: Clock,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        self._hub_id = hub_id
        self.set_issuer_keys(issuer_keys)
        self._clock = clock
        self._leeway = leeway_seconds
        self._cose = COSE.new()

    def set_issuer_keys(self, issuer_keys: Mapping[str, bytes]) -> None:
        """Trust exactly these keys from now on (a grant signed by any other is refused as
        `token_unknown_key`). The map is replaced whole: `verify` reads it without a lock."""
        self._keys = {
            # COSE_Key: kty OKP(1), crv Ed25519(-1: 6), x(-2), alg EdDSA(3: -8), kid(2)
            kid: COSEKey.new({1: 1, -1: 6, -2: raw, 3: ALG_EDDSA, 2: kid.encode()})
            for kid, raw in issuer_keys.items()
        }

    def verify(self, token: bytes, *, required_scope: str) -> GrantClaims:
        protected, _unprotected, _payload, _sig = _sign1_parts(token)
        kid = _pinned_kid(protected)
        key = self._keys.get(kid)
        if key is None:
            raise GrantRefused(Reason.TOKEN_UNKNOWN_KEY, "kid is not a trusted issuer key")
        try:
            payload = self._cose.decode(_strip_cwt_tag(token), keys=key)
        except Exception as exc:  # cwt raises several types for a bad signature
            raise GrantRefused(Reason.TOKEN_SIGNATURE, "signature does not verify") from exc
        claims = _parse_claims(payload)
        self._check_claims(claims, required_scope)
        return claims

    def _check_claims(self, claims: GrantClaims, required_scope: str) -> None:
        now = self._clock()
        if claims.issuer != ISSUER:
            raise GrantRefused(Reason.TOKEN_MALFORMED, "unexpected issuer")
        if now > claims.expires + self._leeway:
            raise GrantRefused(Reason.TOKEN_EXPIRED)
        if now < claims.not_before - self._leeway:
            raise GrantRefused(Reason.TOKEN_NOT_YET_VALID)
        if claims.hub_id != self._hub_id or not claims.access_point:
            raise GrantRefused(Reason.TOKEN_AUDIENCE, "grant is for another hub")
        if required_scope not in claims.scope:
            raise GrantRefused(Reason.TOKEN_SCOPE, f"scope lacks {required_scope!r}")


def _strip_cwt_tag(token: bytes) -> bytes:
    if token[:2] == b"\xd8\x3d":  # tag 61, one-byte form
        return token[2:]
    return token


def _sign1_parts(token: bytes) -> tuple[dict[Any, Any], Any, Any, Any]:
    if not isinstance(token, bytes) or not token or len(token) > MAX_TOKEN_BYTES:
        raise GrantRefused(Reason.TOKEN_MALFORMED, "empty or oversized token")
    body = io.BytesIO(_strip_cwt_tag(token))
    try:
        item = cbor2.CBORDecoder(body).decode()
    except Exception as exc:
        raise GrantRefused(Reason.TOKEN_MALFORMED, "not CBOR") from exc
    if body.tell() != len(body.getbuffer()):
        raise GrantRefused(Reason.TOKEN_MALFORMED, "bytes after the token")
    if not isinstance(item, cbor2.CBORTag) or item.tag != COSE_SIGN1_TAG:
        # An unsigned CWT, a MAC or an encrypted message: not something the hub accepts.
        raise GrantRefused(Reason.TOKEN_ALGORITHM, "not a COSE_Sign1 message")
    value = item.value
    if not isinstance(value, list) or len(value) != 4 or not isinstance(value[0], bytes):
        raise GrantRefused(Reason.TOKEN_MALFORMED, "bad COSE_Sign1 structure")
    try:
        protected = cbor2.loads(value[0]) if value[0] else {}
    except Exception as exc:
        raise GrantRefused(Reason.TOKEN_MALFORMED, "bad protected header") from exc
    if not isinstance(protected, dict):
        raise GrantRefused(Reason.TOKEN_MALFORMED, "bad protected header")
    return protected, value[1], value[2], value[3]


def _pinned_kid(protected: dict[Any, Any]) -> str:
    # The algorithm must be named in the protected header and must be EdDSA: no "none",
    # no HMAC with a public key as secret, nothing taken from the unprotected header.
    if protected.get(1) != ALG_EDDSA:
        raise GrantRefused(Reason.TOKEN_ALGORITHM, "algorithm is not EdDSA")
    kid = protected.get(4)
    if not isinstance(kid, bytes) or not kid:
        raise GrantRefused(Reason.TOKEN_UNKNOWN_KEY, "no kid in the protected header")
    try:
        return kid.decode("ascii")
    except UnicodeDecodeError as exc:
        raise GrantRefused(Reason.TOKEN_UNKNOWN_KEY, "kid is not ascii") from exc


def _parse_claims(payload: bytes) -> GrantClaims:
    try:
        raw = cbor2.loads(payload)
    except Exception as exc:
        raise GrantRefused(Reason.TOKEN_MALFORMED, "claims are not CBOR") from exc
    if not isinstance(raw, dict):
        raise GrantRefused(Reason.TOKEN_MALFORMED, "claims are not a map")
    try:
        claims = GrantClaims(
            issuer=_typed(raw, CLAIM_ISS, str),
            audience=_typed(raw, CLAIM_AUD, str),
            expires=_typed(raw, CLAIM_EXP, int),
            not_before=_typed(raw, CLAIM_NBF, int),
            issued_at=_typed(raw, CLAIM_IAT, int),
            token_id=_typed(raw, CLAIM_CTI, bytes),
            scope=tuple(_typed(raw, CLAIM_SCOPE, str).split()),
            entry_id=_typed(raw, CLAIM_ENTRY, str),
            pop_key=pop.point_from_cnf(raw[CLAIM_CNF]) if CLAIM_CNF in raw else None,
        )
    except (KeyError, TypeError) as exc:
        raise GrantRefused(Reason.TOKEN_MALFORMED, f"claim missing or mistyped: {exc}") from exc
    except pop.ProofError as exc:
        raise GrantRefused(Reason.TOKEN_MALFORMED, f"cnf: {exc}") from exc
    if len(claims.token_id) != TOKEN_ID_BYTES:
        raise GrantRefused(Reason.TOKEN_MALFORMED, "cti must be 16 bytes")
    return claims


def _typed(raw: Mapping[Any, Any], key: int, kind: type[_T]) -> _T:
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"claim {key} is not {kind.__name__}")
    return value
