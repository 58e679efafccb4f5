"""The hub's shadow: the desired document the service signs, and the hub's report on it.

desired, retained QoS 1 on `doorstep/hubs/{hub}/desired` (service -> hub):

    {"v": 1, "hub": "<hub id>", "version": <int >= 1, strictly increasing per hub>,
     "issued_at": <unix s>, "timezone": "<IANA zone of the home>",
     "credentials": [            the COMPLETE set of keypad codes the hub must hold
       {"id": "<grant id>", "access_point": "<slug>", "name": "<= 10 chars",
        "pin": "<base64url `protocol.seal` of the PIN digits; context = id>",
        "valid_from": <unix|null>, "valid_until": <unix|null>,
        "week_days": [{"days": <Matter DaysMask 1..127>, "start": "HH:MM", "end": "HH:MM"}],
        "year_days": [{"start": "YYYY-MM-DDTHH:MM:SS", "end": "..."}],  local wall clock
        "uses": <remaining uses | null = unlimited>}],
     "revoked_tokens": [{"token_id": "<hex cti>", "expires": <unix>}],
     "issuer_keys": {"<kid>": "<base64url raw Ed25519 public key>"},   optional: the
                                 COMPLETE set of issuer keys the hub must trust, 1 to 16
     "kid": "<issuer key id>",
     "sig": "<base64url Ed25519 over canonical JSON of the document without sig>"}

reported, retained QoS 1 on `doorstep/hubs/{hub}/reported` (hub -> service):

    {"hub", "version", "applied_at": <unix float>,
     "credentials": {"<id>": "active" | "scheduled" | "cleared" | "failed:<reason>"}}

`scheduled`: valid_from is not reached yet (the code is not on the lock); `cleared`: past
valid_until or its uses are spent (the code is off the lock). The signature is checked
against the issuer keys the hub trusts now (EdDSA only: the keys are Ed25519);
`canonical` is `protocol.messages.canonical` (sorted keys, no spaces), computed over the
JSON object as received, minus `sig`.

Issuer key rotation: once the hub has applied a document (verified, newer than the one it
holds), the document's `issuer_keys` are the keys it trusts, for desired documents and
grants alike, in place of those it held (the set pinned at enrollment, or a former
document's). A document whose `issuer_keys` do not hold the key that signed it, under its
`kid`, is refused (`shadow_malformed`): a hub is never told to distrust the key it has
just verified. A document without `issuer_keys` (a service of the previous release)
leaves the hub's set as it is; a hub of the previous release refuses a document that
has the field, so hubs are upgraded before the service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, time
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import public_key_bytes
from doorstep.protocol.messages import b64decode, b64encode, canonical
from doorstep.protocol.topics import HUB_ID_PATTERN

__all__ = [
    "MAX_CREDENTIALS",
    "MAX_DESIRED_BYTES",
    "MAX_ISSUER_KEYS",
    "MAX_REVOKED_TOKENS",
    "CredentialState",
    "DesiredCredential",
    "DesiredDocument",
    "ReportedDocument",
    "RevokedToken",
    "ShadowRefused",
    "WeekDayWindow",
    "YearDayWindow",
    "failed",
    "sign_shadow",
    "verify_shadow",
]

SHADOW_VERSION = 1
MAX_CREDENTIALS = 250
MAX_REVOKED_TOKENS = 1000
MAX_WINDOWS = 8  # per kind and credential; the lock may hold fewer (then failed:<status>)
# 250 credentials at ~450 bytes and 1,000 revocations at ~70 bytes fit with room to spare.
MAX_DESIRED_BYTES = 256 * 1024
MAX_SEALED_PIN_CHARS = 420  # base64url of `seal.MAX_SEALED_BYTES`
MAX_ISSUER_KEYS = 16

KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_RAW_ED25519 = re.compile(r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")  # 32 bytes, base64url

CREDENTIAL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
SLUG = r"^[a-z0-9][a-z0-9-]{0,31}$"
_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_LOCAL = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$")
_EARLIEST = datetime(2000, 1, 1)  # Matter's epoch-s cannot go before it


class CredentialState(StrEnum):
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    CLEARED = "cleared"


def failed(reason: str) -> str:
    """The reported state of a credential the hub could not hold, e.g. `failed:no_keypad`."""
    return f"failed:{reason}"


class ShadowRefused(Exception):
    """The desired document is not acceptable; `reason` is a stable `Reason` code."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeekDayWindow(_Model):
    """Matter SetWeekDaySchedule: on `days`, from `start` through `end`, local time."""

    days: int = Field(ge=1, le=127)
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hour_minute(cls, value: str) -> str:
        if not _HH_MM.fullmatch(value):
            raise ValueError("must be HH:MM, 00:00 to 23:59")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> WeekDayWindow:
        if self.start >= self.end:  # zero-padded HH:MM compare as text
            raise ValueError("start must be before end")
        return self

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def end_time(self) -> time:
        return time.fromisoformat(self.end)


class YearDayWindow(_Model):
    """Matter SetYearDaySchedule: from `start` through `end` on the home's wall clock."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: str) -> str:
        if not _LOCAL.fullmatch(value):
            raise ValueError("must be YYYY-MM-DDTHH:MM:SS, with no offset")
        if datetime.fromisoformat(value) < _EARLIEST:
            raise ValueError("must not be before 2000-01-01")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> YearDayWindow:
        if self.start_local >= self.end_local:
            raise ValueError("start must be before end")
        return self

    @property
    def start_local(self) -> datetime:
        return datetime.fromisoformat(self.start)

    @property
    def end_local(self) -> datetime:
        return datetime.fromisoformat(self.end)


class DesiredCredential(_Model):
    """One keypad code the hub must hold on one access point's lock."""

    id: str = Field(pattern=CREDENTIAL_ID)
    access_point: str = Field(pattern=SLUG)
    name: str = Field(max_length=10)
    pin: str = Field(min_length=1, max_length=MAX_SEALED_PIN_CHARS, pattern=r"^[A-Za-z0-9_-]+$")
    valid_from: int | None = Field(default=None, ge=0)
    valid_until: int | None = Field(default=None, ge=0)
    week_days: tuple[WeekDayWindow, ...] = Field(default=(), max_length=MAX_WINDOWS)
    year_days: tuple[YearDayWindow, ...] = Field(default=(), max_length=MAX_WINDOWS)
    uses: int | None = Field(default=None, ge=0, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> DesiredCredential:
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_from >= self.valid_until
        ):
            raise ValueError("valid_from must be before valid_until")
        return self

    def __repr__(self) -> str:  # the sealed PIN stays out of logs, even sealed
        return f"DesiredCredential(id={self.id!r}, access_point={self.access_point!r})"

    def sealed_pin(self) -> bytes:
        return b64decode(self.pin)

    def fingerprint(self) -> bytes:
        """What identifies this programming of the code: everything but `uses`, which the
        hub counts down itself between versions."""
        return canonical(self.model_dump(exclude={"uses"}))


class RevokedToken(_Model):
    token_id: str = Field(pattern=r"^[0-9a-f]{2,64}$")
    expires: int = Field(ge=0)


class DesiredDocument(_Model):
    v: Literal[1] = 1  # SHADOW_VERSION
    hub: str = Field(max_length=63)
    version: int = Field(ge=1, le=2**53)
    issued_at: int = Field(ge=0)
    timezone: str = Field(min_length=1, max_length=64)
    credentials: tuple[DesiredCredential, ...] = Field(default=(), max_length=MAX_CREDENTIALS)
    revoked_tokens: tuple[RevokedToken, ...] = Field(default=(), max_length=MAX_REVOKED_TOKENS)
    issuer_keys: dict[str, str] | None = Field(
        default=None, min_length=1, max_length=MAX_ISSUER_KEYS
    )
    kid: str = Field(default="", max_length=64)
    sig: str = Field(default="", max_length=128)

    @field_validator("hub")
    @classmethod
    def _hub_id(cls, value: str) -> str:
        if not HUB_ID_PATTERN.fullmatch(value):
            raise ValueError("not a hub id")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not a known IANA time zone") from exc
        return value

    @field_validator("credentials")
    @classmethod
    def _unique(cls, value: tuple[DesiredCredential, ...]) -> tuple[DesiredCredential, ...]:
        if len({credential.id for credential in value}) != len(value):
            raise ValueError("credential ids must be unique")
        return value

    @field_validator("issuer_keys")
    @classmethod
    def _keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for kid, raw in (value or {}).items():
            if not KEY_ID.fullmatch(kid):
                raise ValueError("issuer key ids must be 1-64 of A-Z a-z 0-9 . _ -")
            if not _RAW_ED25519.fullmatch(raw):
                raise ValueError("issuer keys must be base64url raw Ed25519 public keys")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def trusted_keys(self) -> dict[str, bytes] | None:
        """The issuer keys the hub must trust once this document is applied; None: keep
        the ones it has."""
        if self.issuer_keys is None:
            return None
        return {kid: b64decode(raw) for kid, raw in self.issuer_keys.items()}


class ReportedDocument(_Model):
    hub: str = Field(max_length=63)
    version: int = Field(ge=0)  # 0: nothing applied yet
    applied_at: float
    credentials: dict[str, str] = Field(default_factory=dict, max_length=MAX_CREDENTIALS)

    def to_bytes(self) -> bytes:
        return canonical(self.model_dump())


def sign_shadow(
    doc: DesiredDocument | Mapping[str, Any], private_key: Ed25519PrivateKey, kid: str
) -> bytes:
    """The service's side: sign a desired document; returns the payload to publish."""
    fields = doc.model_dump() if isinstance(doc, DesiredDocument) else dict(doc)
    unsigned = DesiredDocument.model_validate({**fields, "kid": kid, "sig": ""})
    keys = unsigned.trusted_keys()
    if keys is not None and keys.get(kid) != public_key_bytes(private_key.public_key()):
        raise ShadowRefused(Reason.SHADOW_MALFORMED, "issuer_keys must hold the signing key")
    # Without issuer keys, the document is what the previous release signed.
    body = unsigned.model_dump(exclude={"sig"} if keys is not None else {"sig", "issuer_keys"})
    signature = private_key.sign(canonical(body))
    payload = canonical({**body, "sig": b64encode(signature)})
    if len(payload) > MAX_DESIRED_BYTES:
        raise ShadowRefused(Reason.SHADOW_MALFORMED, f"document exceeds {MAX_DESIRED_BYTES} bytes")
    return payload


def verify_shadow(payload: bytes, issuer_keys: Mapping[str, bytes], hub_id: str) -> DesiredDocument:
    """The hub's side: parse, check the signature against the keys the hub trusts, the
    audience, and that the keys the document names still hold the one that signed it."""
    if len(payload) > MAX_DESIRED_BYTES:
        raise ShadowRefused(Reason.SHADOW_MALFORMED, "document too large")
    try:
        raw = orjson.loads(payload)
        doc = DesiredDocument.model_validate(raw)
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise ShadowRefused(Reason.SHADOW_MALFORMED, "not a valid desired document") from exc
    key = issuer_keys.get(doc.kid) if doc.kid else None
    if key is None:
        raise ShadowRefused(Reason.SHADOW_UNKNOWN_KEY, "kid is not a trusted issuer key")
    unsigned = {name: value for name, value in raw.items() if name != "sig"}
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(b64decode(doc.sig), canonical(unsigned))
    except (InvalidSignature, ValueError) as exc:
        raise ShadowRefused(Reason.SHADOW_SIGNATURE, "signature does not verify") from exc
    if doc.hub != hub_id:
        raise ShadowRefused(Reason.SHADOW_WRONG_HUB, "document is for another hub")
    named = doc.trusted_keys()
    if named is not None and named.get(doc.kid) != key:
        raise ShadowRefused(Reason.SHADOW_MALFORMED, "issuer_keys lack the key that signed it")
    return doc
