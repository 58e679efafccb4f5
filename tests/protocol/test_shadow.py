"""`protocol.shadow`: the desired document is signed by a pinned issuer, for one hub."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.protocol import seal
from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import key_id_for, public_key_bytes
from doorstep.protocol.messages import b64decode, b64encode, canonical
from doorstep.protocol.shadow import (
    MAX_CREDENTIALS,
    DesiredDocument,
    ReportedDocument,
    ShadowRefused,
    failed,
    sign_shadow,
    verify_shadow,
)

HUB = "hub-0123456789abcdef"
T = 1_800_000_000


@pytest.fixture
def issuer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def keys_of(issuer: Ed25519PrivateKey) -> dict[str, bytes]:
    return {key_id_for(issuer.public_key()): public_key_bytes(issuer.public_key())}


def credential(credential_id: str = "grt-1", **changes: Any) -> dict[str, Any]:
    hub_key = seal.generate_key()
    pin = seal.seal(seal.public_key_bytes(hub_key), b"4711", hub_id=HUB, context=credential_id)
    values: dict[str, Any] = {
        "id": credential_id,
        "access_point": "front",
        "name": "Cleaner",
        "pin": b64encode(pin),
        "valid_from": None,
        "valid_until": None,
        "week_days": [{"days": 0b0111110, "start": "09:00", "end": "17:00"}],
        "year_days": [{"start": "2027-01-01T00:00:00", "end": "2027-02-01T00:00:00"}],
        "uses": None,
    }
    return {**values, **changes}


def document(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "v": 1,
        "hub": HUB,
        "version": 1,
        "issued_at": T,
        "timezone": "Europe/Paris",
        "credentials": [credential()],
        "revoked_tokens": [{"token_id": "00" * 16, "expires": T + 600}],
    }
    return {**values, **changes}


def signed(issuer: Ed25519PrivateKey, **changes: Any) -> bytes:
    return sign_shadow(document(**changes), issuer, key_id_for(issuer.public_key()))


def refusal(payload: bytes, keys: dict[str, bytes], hub: str = HUB) -> Reason:
    with pytest.raises(ShadowRefused) as refused:
        verify_shadow(payload, keys, hub)
    return refused.value.reason


def test_a_signed_document_verifies_for_its_hub(issuer) -> None:
    doc = verify_shadow(signed(issuer), keys_of(issuer), HUB)

    assert doc.version == 1
    assert doc.credentials[0].id == "grt-1"
    assert doc.credentials[0].week_days[0].start_time.hour == 9
    assert doc.revoked_tokens[0].token_id == "00" * 16
    assert str(doc.zone) == "Europe/Paris"


def test_the_signature_covers_the_canonical_json_without_sig(issuer) -> None:
    payload = signed(issuer)
    raw = orjson.loads(payload)
    sig = raw.pop("sig")

    issuer.public_key().verify(b64decode(sig), canonical(raw))
    assert raw["kid"] == key_id_for(issuer.public_key())


def test_a_model_can_be_signed_too(issuer) -> None:
    model = DesiredDocument.model_validate(document())
    payload = sign_shadow(model, issuer, key_id_for(issuer.public_key()))

    assert verify_shadow(payload, keys_of(issuer), HUB).version == 1


def test_another_key_is_refused(issuer) -> None:
    stranger = Ed25519PrivateKey.generate()

    assert refusal(signed(stranger), keys_of(issuer)) == Reason.SHADOW_UNKNOWN_KEY


def test_another_key_under_a_pinned_kid_is_refused(issuer) -> None:
    stranger = Ed25519PrivateKey.generate()
    payload = sign_shadow(document(), stranger, key_id_for(issuer.public_key()))

    assert refusal(payload, keys_of(issuer)) == Reason.SHADOW_SIGNATURE


def test_a_document_for_another_hub_is_refused(issuer) -> None:
    payload = signed(issuer, hub="hub-fedcba9876543210")

    assert refusal(payload, keys_of(issuer)) == Reason.SHADOW_WRONG_HUB


@pytest.mark.parametrize(
    ("field", "value"),
    [("version", 99), ("credentials", []), ("revoked_tokens", []), ("timezone", "UTC")],
)
def test_any_changed_field_breaks_the_signature(issuer, field, value) -> None:
    raw = orjson.loads(signed(issuer))
    raw[field] = value

    assert refusal(orjson.dumps(raw), keys_of(issuer)) == Reason.SHADOW_SIGNATURE


def test_a_missing_signature_is_refused(issuer) -> None:
    raw = orjson.loads(signed(issuer))
    del raw["sig"]

    assert refusal(orjson.dumps(raw), keys_of(issuer)) == Reason.SHADOW_SIGNATURE


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"version": 0},
        {"timezone": "Mars/Olympus"},
        {"surprise": True},
        {"credentials": [credential(), credential()]},  # the same id twice
        {"credentials": [credential(name="far too long a name")]},
        {"credentials": [credential(access_point="Front Door")]},
        {"credentials": [credential(valid_from=T + 10, valid_until=T)]},
        {"credentials": [credential(week_days=[{"days": 0, "start": "09:00", "end": "10:00"}])]},
        {"credentials": [credential(week_days=[{"days": 128, "start": "09:00", "end": "10:00"}])]},
        {"credentials": [credential(week_days=[{"days": 1, "start": "10:00", "end": "09:00"}])]},
        {"credentials": [credential(week_days=[{"days": 1, "start": "24:00", "end": "24:30"}])]},
        {"credentials": [credential(year_days=[{"start": "2027-01-01", "end": "2027-02-01"}])]},
        {
            "credentials": [
                credential(
                    year_days=[{"start": "2027-01-01T00:00:00+01:00", "end": "2027-02-01T00:00:00"}]
                )
            ]
        },
        {"credentials": [credential(uses=-1)]},
        {"revoked_tokens": [{"token_id": "XYZ", "expires": T}]},
    ],
)
def test_malformed_documents_are_refused(issuer, changes) -> None:
    raw = document(**changes)
    kid = key_id_for(issuer.public_key())
    unsigned = {**raw, "kid": kid}
    payload = canonical({**unsigned, "sig": b64encode(issuer.sign(canonical(unsigned)))})

    assert refusal(payload, keys_of(issuer)) == Reason.SHADOW_MALFORMED


def test_the_signer_refuses_what_the_hub_would_refuse(issuer) -> None:
    with pytest.raises(ValueError):
        signed(issuer, timezone="Mars/Olympus")


def test_sizes_are_bounded(issuer) -> None:
    many = [credential(f"grt-{i}") for i in range(MAX_CREDENTIALS + 1)]
    with pytest.raises(ValueError):
        signed(issuer, credentials=many)

    assert refusal(b"{" + b" " * 300_000 + b"}", keys_of(issuer)) == Reason.SHADOW_MALFORMED
    assert refusal(b"not json", keys_of(issuer)) == Reason.SHADOW_MALFORMED
    assert refusal(b"[]", keys_of(issuer)) == Reason.SHADOW_MALFORMED


def test_a_full_document_fits(issuer) -> None:
    full = [
        credential(f"grt-{i:060d}", valid_from=T, valid_until=T + 3600, uses=5)
        for i in range(MAX_CREDENTIALS)
    ]
    revoked = [{"token_id": f"{i:032x}", "expires": T} for i in range(1000)]

    payload = signed(issuer, credentials=full, revoked_tokens=revoked)

    assert len(verify_shadow(payload, keys_of(issuer), HUB).credentials) == MAX_CREDENTIALS


def test_the_sealed_pin_stays_out_of_repr(issuer) -> None:
    doc = verify_shadow(signed(issuer), keys_of(issuer), HUB)

    assert doc.credentials[0].pin not in repr(doc.credentials[0])


def test_reported_documents_are_canonical_json() -> None:
    report = ReportedDocument(
        hub=HUB,
        version=3,
        applied_at=T + 0.25,
        credentials={"grt-1": "active", "grt-2": failed("no_keypad")},
    )

    assert orjson.loads(report.to_bytes()) == {
        "hub": HUB,
        "version": 3,
        "applied_at": T + 0.25,
        "credentials": {"grt-1": "active", "grt-2": "failed:no_keypad"},
    }
