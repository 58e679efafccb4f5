"""Grant tokens: the RFC 8392 vector, our own round trip, and every way the hub says no.

The forged tokens are built by hand (`_sign1`, RFC 9052 section 4.4) rather than through
`GrantSigner`, so that each one differs from a good grant in exactly one way; a control
test shows a hand-built token with honest headers verifies.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cwt import COSE, COSEKey
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.messages.cosemessage import CoseMessage
from pycose.messages.sign1message import Sign1Message

from doorstep.db import ordered_id
from doorstep.protocol import Reason
from doorstep.protocol.grants import (
    ALG_EDDSA,
    CLAIM_CTI,
    CLAIM_ENTRY,
    CLAIM_EXP,
    CLAIM_ISS,
    DEFAULT_LEEWAY_SECONDS,
    MAX_TOKEN_BYTES,
    GrantClaims,
    GrantRefused,
    GrantSigner,
    GrantVerifier,
    audience_for,
    public_key_bytes,
)

# --- RFC 8392 Appendix A.2.3 (key) and A.3 (signed CWT) ------------------------------

RFC8392_KID = b"AsymmetricECDSA256"
RFC8392_X = bytes.fromhex("143329cce7868e416927599cf65a34f3ce2ffda55a7eca69ed8919a394d42f0f")
RFC8392_Y = bytes.fromhex("60f7f1a780d8a783bfb7a2dd6b2796e8128dbbcef9d3d168db9529971a36e7b9")
RFC8392_D = bytes.fromhex("6c1382765aec5358f117733d281c1c7bdc39884d04a45a1e6c67c858bc206c19")
# Figure 10 of RFC 8392, lines joined. Unprotected header {4: 'AsymmetricECDSA256'}.
RFC8392_A3_TOKEN = bytes.fromhex(
    "d28443a10126a104524173796d6d657472696345434453413235365850a701756"
    "36f61703a2f2f61732e6578616d706c652e636f6d02656572696b77037818636f"
    "61703a2f2f6c696768742e6578616d706c652e636f6d041a5612aeb0051a5610d"
    "9f0061a5610d9f007420b7158405427c1ff28d23fbad1f29c4c7c6a555e601d6f"
    "a29f9179bc3d7438bacaca5acd08c8d4d4f96131680c429a01f85951ecee743a5"
    "2b9b63632c57209120e1c9e30"
)
RFC8392_A3_CLAIMS = {
    1: "coap://as.example.com",
    2: "erikw",
    3: "coap://light.example.com",
    4: 1444064944,
    5: 1443944944,
    6: 1443944944,
    7: b"\x0b\x71",
}


def _rfc8392_cwt_key() -> Any:
    # COSE_Key: kty EC2(1: 2), crv P-256(-1: 1), x, y, d, alg ES256(3: -7), kid.
    return COSEKey.new(
        {1: 2, -1: 1, -2: RFC8392_X, -3: RFC8392_Y, -4: RFC8392_D, 3: -7, 2: RFC8392_KID}
    )


def _flip_last_byte(token: bytes) -> bytes:
    return token[:-1] + bytes([token[-1] ^ 0x01])  # the last byte is the signature's


def test_rfc8392_key_d_matches_x_y() -> None:
    public = ec.derive_private_key(int.from_bytes(RFC8392_D, "big"), ec.SECP256R1()).public_key()
    numbers = public.public_numbers()

    assert numbers.x.to_bytes(32, "big") == RFC8392_X
    assert numbers.y.to_bytes(32, "big") == RFC8392_Y


def test_rfc8392_a3_verifies_with_cwt() -> None:
    payload = COSE.new().decode(RFC8392_A3_TOKEN, keys=_rfc8392_cwt_key())

    assert cbor2.loads(payload) == RFC8392_A3_CLAIMS


def test_rfc8392_a3_with_flipped_signature_fails_with_cwt() -> None:
    with pytest.raises(Exception, match="Failed to verify"):
        COSE.new().decode(_flip_last_byte(RFC8392_A3_TOKEN), keys=_rfc8392_cwt_key())


def _pycose_message(token: bytes) -> Sign1Message:
    message = CoseMessage.decode(token)
    assert isinstance(message, Sign1Message)
    message.key = EC2Key(crv=P256, x=RFC8392_X, y=RFC8392_Y)  # public half only
    return message


def test_rfc8392_a3_verifies_with_pycose() -> None:
    message = _pycose_message(RFC8392_A3_TOKEN)

    assert message.verify_signature()
    assert message.payload is not None
    assert cbor2.loads(message.payload) == RFC8392_A3_CLAIMS


def test_rfc8392_a3_with_flipped_signature_fails_with_pycose() -> None:
    assert not _pycose_message(_flip_last_byte(RFC8392_A3_TOKEN)).verify_signature()


# --- our grants ----------------------------------------------------------------------

T = 1_800_000_000
HUB = "hub-0123456789abcdef"
ENTRY = ordered_id("ent")  # as the service makes them: "ent-" + 17 base-32 digits
TOKEN_ID = bytes(range(16))
MAX_GRANT_BYTES = 256  # measured: 200 bytes with ids of production length


@pytest.fixture(scope="module")
def issuer_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signer(issuer_key: Ed25519PrivateKey) -> GrantSigner:
    return GrantSigner(issuer_key)


@pytest.fixture(scope="module")
def verifier(signer: GrantSigner, issuer_key: Ed25519PrivateKey) -> GrantVerifier:
    return GrantVerifier(
        hub_id=HUB,
        issuer_keys={signer.kid: public_key_bytes(issuer_key.public_key())},
        clock=lambda: T,
    )


def _claims(**changes: Any) -> GrantClaims:
    claims = GrantClaims(
        audience=audience_for(HUB, "front"),
        not_before=T,
        expires=T + 600,
        issued_at=T,
        token_id=TOKEN_ID,
        scope=("unlock",),
        entry_id=ENTRY,
    )
    return replace(claims, **changes)


def _refusal(verifier: GrantVerifier, token: bytes) -> Reason:
    with pytest.raises(GrantRefused) as refused:
        verifier.verify(token, required_scope="unlock")
    return refused.value.reason


def _sign1(
    protected: dict[int, Any],
    payload: bytes,
    sign: Callable[[bytes], bytes],
    *,
    unprotected: dict[int, Any] | None = None,
) -> bytes:
    """A COSE_Sign1 (RFC 9052 4.4): the signature covers protected header and payload."""
    protected_bytes = cbor2.dumps(protected) if protected else b""
    to_be_signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    message = [protected_bytes, unprotected or {}, payload, sign(to_be_signed)]
    return cbor2.dumps(cbor2.CBORTag(18, message))


def _es256(private_key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # COSE wants r || s

    return sign


def _payload(claims: GrantClaims) -> bytes:
    return cbor2.dumps(claims.to_cbor_map())


def test_round_trip(signer: GrantSigner, verifier: GrantVerifier) -> None:
    claims = _claims()

    assert verifier.verify(signer.sign(claims), required_scope="unlock") == claims


def test_round_trip_accepts_a_leading_cwt_tag(signer: GrantSigner, verifier: GrantVerifier) -> None:
    token = cbor2.dumps(cbor2.CBORTag(61, cbor2.loads(signer.sign(_claims()))))

    assert token[:2] == b"\xd8\x3d"
    assert verifier.verify(token, required_scope="unlock") == _claims()


def test_wire_format_is_what_the_module_docstring_says(signer: GrantSigner) -> None:
    item = cbor2.loads(signer.sign(_claims()))

    assert item.tag == 18
    protected, unprotected, payload, signature = item.value
    assert cbor2.loads(protected) == {1: ALG_EDDSA, 4: signer.kid.encode()}
    assert unprotected == {}
    assert cbor2.loads(payload) == _claims().to_cbor_map()
    assert len(signature) == 64


def test_grant_fits_in_256_bytes(signer: GrantSigner) -> None:
    # Production ids (`new_id` for the hub, `ordered_id` for the entry); a typical slug.
    token = signer.sign(_claims())

    assert len(token) <= MAX_GRANT_BYTES, len(token)


def test_hand_built_token_with_honest_headers_verifies(
    signer: GrantSigner, verifier: GrantVerifier, issuer_key: Ed25519PrivateKey
) -> None:
    # The control for every forgery below: the hand-built encoding itself is accepted.
    token = _sign1({1: ALG_EDDSA, 4: signer.kid.encode()}, _payload(_claims()), issuer_key.sign)

    assert verifier.verify(token, required_scope="unlock") == _claims()


def test_expiry_and_not_before_allow_the_leeway(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    just_expired = _claims(not_before=T - 600, expires=T - DEFAULT_LEEWAY_SECONDS)
    almost_valid = _claims(not_before=T + DEFAULT_LEEWAY_SECONDS)

    assert verifier.verify(signer.sign(just_expired), required_scope="unlock") == just_expired
    assert verifier.verify(signer.sign(almost_valid), required_scope="unlock") == almost_valid


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"expires": T - DEFAULT_LEEWAY_SECONDS - 1, "not_before": T - 600}, Reason.TOKEN_EXPIRED),
        ({"not_before": T + DEFAULT_LEEWAY_SECONDS + 1}, Reason.TOKEN_NOT_YET_VALID),
        ({"audience": audience_for("hub-fedcba9876543210", "front")}, Reason.TOKEN_AUDIENCE),
        ({"audience": HUB}, Reason.TOKEN_AUDIENCE),  # no access point
        ({"audience": f"{HUB}/"}, Reason.TOKEN_AUDIENCE),
        ({"scope": ("lock",)}, Reason.TOKEN_SCOPE),
        ({"scope": ("unlocks",)}, Reason.TOKEN_SCOPE),  # a word, not a substring
        ({"scope": ()}, Reason.TOKEN_SCOPE),
        ({"issuer": "someone-else"}, Reason.TOKEN_MALFORMED),
        ({"token_id": b"\x01" * 8}, Reason.TOKEN_MALFORMED),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "other-hub",
        "no-access-point",
        "empty-access-point",
        "scope-lock",
        "scope-unlocks",
        "scope-empty",
        "other-issuer",
        "short-token-id",
    ],
)
def test_signed_claims_refused(
    signer: GrantSigner, verifier: GrantVerifier, changes: dict[str, Any], reason: Reason
) -> None:
    assert _refusal(verifier, signer.sign(_claims(**changes))) == reason


@pytest.mark.parametrize(
    "mangle",
    [
        lambda claims: {k: v for k, v in claims.items() if k != CLAIM_ENTRY},
        lambda claims: {k: v for k, v in claims.items() if k != CLAIM_CTI},
        lambda claims: {**claims, CLAIM_EXP: float(claims[CLAIM_EXP])},
        lambda claims: {**claims, CLAIM_EXP: True},
        lambda claims: {**claims, CLAIM_ISS: b"doorstep"},
        lambda claims: [claims[CLAIM_ISS]],
    ],
    ids=["no-entry", "no-cti", "float-exp", "bool-exp", "bytes-iss", "not-a-map"],
)
def test_signed_but_malformed_claims_refused(
    signer: GrantSigner,
    verifier: GrantVerifier,
    issuer_key: Ed25519PrivateKey,
    mangle: Callable[[dict[int, Any]], Any],
) -> None:
    payload = cbor2.dumps(mangle(_claims().to_cbor_map()))
    token = _sign1({1: ALG_EDDSA, 4: signer.kid.encode()}, payload, issuer_key.sign)

    assert _refusal(verifier, token) == Reason.TOKEN_MALFORMED


def test_signed_by_another_key_with_a_pinned_kid(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    impostor = Ed25519PrivateKey.generate()
    token = _sign1({1: ALG_EDDSA, 4: signer.kid.encode()}, _payload(_claims()), impostor.sign)

    assert _refusal(verifier, token) == Reason.TOKEN_SIGNATURE


def test_signed_by_an_unknown_key(verifier: GrantVerifier) -> None:
    token = GrantSigner(Ed25519PrivateKey.generate()).sign(_claims())

    assert _refusal(verifier, token) == Reason.TOKEN_UNKNOWN_KEY


def test_kid_only_in_the_unprotected_header(
    signer: GrantSigner, verifier: GrantVerifier, issuer_key: Ed25519PrivateKey
) -> None:
    token = _sign1(
        {1: ALG_EDDSA},
        _payload(_claims()),
        issuer_key.sign,
        unprotected={4: signer.kid.encode()},
    )

    assert _refusal(verifier, token) == Reason.TOKEN_UNKNOWN_KEY


def test_payload_tampered(signer: GrantSigner, verifier: GrantVerifier) -> None:
    token = signer.sign(_claims(entry_id="ent-aaaaaaaaaaaaaaaa"))
    forged = token.replace(b"ent-aaaaaaaaaaaaaaaa", b"ent-aaaaaaaaaaaaaaab")

    assert forged != token
    assert _refusal(verifier, forged) == Reason.TOKEN_SIGNATURE


def test_every_single_bit_flip_is_refused(signer: GrantSigner, verifier: GrantVerifier) -> None:
    token = signer.sign(_claims())
    reasons = set()
    for index in range(len(token)):
        flipped = token[:index] + bytes([token[index] ^ 0x01]) + token[index + 1 :]
        reasons.add(_refusal(verifier, flipped))

    assert Reason.TOKEN_SIGNATURE in reasons
    assert reasons <= {
        Reason.TOKEN_SIGNATURE,
        Reason.TOKEN_MALFORMED,
        Reason.TOKEN_ALGORITHM,
        Reason.TOKEN_UNKNOWN_KEY,
    }


def test_unsigned_claims_map(verifier: GrantVerifier) -> None:
    assert _refusal(verifier, _payload(_claims())) == Reason.TOKEN_ALGORITHM


def test_cwt_tag_around_unsigned_claims(verifier: GrantVerifier) -> None:
    token = cbor2.dumps(cbor2.CBORTag(61, _claims().to_cbor_map()))

    assert _refusal(verifier, token) == Reason.TOKEN_ALGORITHM


def test_mac0_keyed_with_the_issuer_public_key(
    signer: GrantSigner, verifier: GrantVerifier, issuer_key: Ed25519PrivateKey
) -> None:
    # The classic confusion: HMAC (alg 5) keyed with the public key everyone knows.
    protected = cbor2.dumps({1: 5, 4: signer.kid.encode()})
    payload = _payload(_claims())
    to_be_maced = cbor2.dumps(["MAC0", protected, b"", payload])
    secret = public_key_bytes(issuer_key.public_key())
    tag = hmac.new(secret, to_be_maced, hashlib.sha256).digest()
    token = cbor2.dumps(cbor2.CBORTag(17, [protected, {}, payload, tag]))

    assert _refusal(verifier, token) == Reason.TOKEN_ALGORITHM


def test_es256_signature_with_a_pinned_kid(signer: GrantSigner, verifier: GrantVerifier) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    token = _sign1({1: -7, 4: signer.kid.encode()}, _payload(_claims()), _es256(p256))

    assert _refusal(verifier, token) == Reason.TOKEN_ALGORITHM


def test_algorithm_only_in_the_unprotected_header(
    signer: GrantSigner, verifier: GrantVerifier, issuer_key: Ed25519PrivateKey
) -> None:
    token = _sign1(
        {4: signer.kid.encode()},
        _payload(_claims()),
        issuer_key.sign,
        unprotected={1: ALG_EDDSA},
    )

    assert _refusal(verifier, token) == Reason.TOKEN_ALGORITHM


def test_empty_protected_header(verifier: GrantVerifier, issuer_key: Ed25519PrivateKey) -> None:
    token = _sign1({}, _payload(_claims()), issuer_key.sign, unprotected={1: ALG_EDDSA})

    assert _refusal(verifier, token) == Reason.TOKEN_ALGORITHM


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"\x1c not cbor",  # additional information 28 is reserved
        b"\x7f\x61a",  # an indefinite text string that never ends
        cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""])),  # three elements
        cbor2.dumps(cbor2.CBORTag(18, [{1: -8}, {}, b"", b""])),  # header not a bstr
        cbor2.dumps(cbor2.CBORTag(18, [b"\xff", {}, b"", b""])),  # header not CBOR
        cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps([1, -8]), {}, b"", b""])),  # not a map
    ],
    ids=[
        "empty",
        "garbage",
        "unterminated",
        "short-array",
        "header-map",
        "header-garbage",
        "header-array",
    ],
)
def test_garbage_refused(verifier: GrantVerifier, token: bytes) -> None:
    assert _refusal(verifier, token) == Reason.TOKEN_MALFORMED


def test_truncated_token(signer: GrantSigner, verifier: GrantVerifier) -> None:
    assert _refusal(verifier, signer.sign(_claims())[:-10]) == Reason.TOKEN_MALFORMED


def test_oversized_token_refused_before_parsing(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    token = signer.sign(_claims(entry_id="e" * MAX_TOKEN_BYTES))

    assert len(token) > MAX_TOKEN_BYTES
    assert _refusal(verifier, token) == Reason.TOKEN_MALFORMED


def test_trailing_bytes_after_the_token(signer: GrantSigner, verifier: GrantVerifier) -> None:
    assert _refusal(verifier, signer.sign(_claims()) + b"\x00") == Reason.TOKEN_MALFORMED
