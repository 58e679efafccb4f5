"""`issuer_keys` in the desired document (`protocol.shadow`): bounded and well formed, it
must hold the key that signed it, and a document without it is signed as before."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import key_id_for, public_key_bytes
from doorstep.protocol.messages import b64decode, b64encode, canonical
from doorstep.protocol.shadow import MAX_ISSUER_KEYS, ShadowRefused, sign_shadow, verify_shadow

HUB = "hub-00112233445566ff"
KEY = Ed25519PrivateKey.generate()
KID = key_id_for(KEY.public_key())
RAW = public_key_bytes(KEY.public_key())
FIELDS: dict[str, Any] = {"hub": HUB, "version": 1, "issued_at": 0, "timezone": "UTC"}


def _hand_signed(issuer_keys: Any) -> bytes:
    body = {**FIELDS, "v": 1, "credentials": [], "revoked_tokens": [], "kid": KID}
    body["issuer_keys"] = issuer_keys
    return canonical({**body, "sig": b64encode(KEY.sign(canonical(body)))})


def test_a_document_without_issuer_keys_is_what_the_previous_release_signed() -> None:
    payload = sign_shadow(FIELDS, KEY, KID)

    assert "issuer_keys" not in orjson.loads(payload)  # its hubs refuse unknown fields
    assert verify_shadow(payload, {KID: RAW}, HUB).trusted_keys() is None


def test_the_named_keys_are_what_the_hub_will_trust() -> None:
    other = b64encode(public_key_bytes(Ed25519PrivateKey.generate().public_key()))
    keys = {KID: b64encode(RAW), "next-1": other}

    doc = verify_shadow(sign_shadow({**FIELDS, "issuer_keys": keys}, KEY, KID), {KID: RAW}, HUB)

    assert doc.trusted_keys() == {KID: RAW, "next-1": b64decode(other)}


def test_the_service_does_not_sign_a_document_leaving_out_its_own_key() -> None:
    other = b64encode(public_key_bytes(Ed25519PrivateKey.generate().public_key()))

    with pytest.raises(ShadowRefused) as refused:
        sign_shadow({**FIELDS, "issuer_keys": {"next-1": other}}, KEY, KID)

    assert refused.value.reason == Reason.SHADOW_MALFORMED


@pytest.mark.parametrize(
    "issuer_keys",
    [
        {},
        {KID: b64encode(RAW)[:-1]},  # 31 bytes and a bit
        {KID: b64encode(RAW + b"\0")},
        {KID: b64encode(RAW)[:-1] + "B"},  # padding bits set: not canonical base64url
        {KID: "*" * 43},
        {"bad kid!": b64encode(RAW)},
        {KID: b64encode(RAW), **{f"k{n}": b64encode(RAW) for n in range(MAX_ISSUER_KEYS)}},
        [KID],
    ],
    ids=["empty", "short", "long", "padding", "alphabet", "kid", "too many", "list"],
)
def test_malformed_issuer_keys_are_refused(issuer_keys: Any) -> None:
    with pytest.raises(ShadowRefused) as refused:
        verify_shadow(_hand_signed(issuer_keys), {KID: RAW}, HUB)

    assert refused.value.reason == Reason.SHADOW_MALFORMED
