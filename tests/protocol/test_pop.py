"""Phone keys and proofs (`protocol.pop`): strict about keys, exact about what is signed."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from doorstep.protocol import pop


@pytest.fixture
def phone() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_a_webcrypto_jwk_round_trips_to_the_grant_and_back(
    phone: ec.EllipticCurvePrivateKey,
) -> None:
    point = pop.from_jwk(pop.jwk(phone.public_key()))
    assert point == pop.compressed(phone.public_key()) and len(point) == 33
    assert pop.point_from_cnf(pop.cose_key(point)) == point
    data = pop.message("ent-1", "hub-1/front", b"c" * 16)
    signature = pop.sign(phone, data)
    assert len(signature) == 64
    assert pop.verify(point, data, signature)
    assert not pop.verify(point, data + b"x", signature)
    assert not pop.verify(point, data, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not pop.verify(point, data, signature[:63])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kty": "OKP"}, "EC P-256"),
        ({"crv": "P-384"}, "EC P-256"),
        ({"d": "AAAA"}, "public key only"),
        ({"x": "not base64!"}, "base64url"),
        ({"x": "AAAA"}, "32 bytes"),
        ({"y": "A" * 43}, "not a point"),
    ],
)
def test_bad_registrations_are_refused(
    phone: ec.EllipticCurvePrivateKey, change: dict[str, str], problem: str
) -> None:
    with pytest.raises(pop.ProofError, match=problem):
        pop.from_jwk({**pop.jwk(phone.public_key()), **change})


def test_only_a_compressed_p256_cose_key_is_accepted_in_a_grant(
    phone: ec.EllipticCurvePrivateKey,
) -> None:
    good = pop.cose_key(pop.compressed(phone.public_key()))
    key = good[1]
    bad = [
        {1: key, 3: b"kid"},  # extra cnf member
        {1: {**key, 2: b"kid"}},  # extra key member
        {1: {**key, -1: 2}},  # P-384
        {1: {**key, 1: 1}},  # OKP
        {1: {**key, -3: b"\x00" * 32}},  # uncompressed y
        {1: {**key, -2: b"\x00" * 31}},  # short x
        {1: {**key, -2: b"\xff" * 32}},  # x not on the curve
        "not a map",
    ]
    for cnf in bad:
        with pytest.raises(pop.ProofError):
            pop.point_from_cnf(cnf)
