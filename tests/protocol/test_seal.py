"""`protocol.seal`: PINs sealed to one hub, for one credential, and nothing else opens them."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from doorstep.protocol import seal
from doorstep.protocol.seal import SealError, open_sealed

HUB = "hub-0123456789abcdef"
OTHER_HUB = "hub-fedcba9876543210"
CREDENTIAL = "grt-0011223344556677"


@pytest.fixture
def key() -> X25519PrivateKey:
    return seal.generate_key()


def sealed_pin(key: X25519PrivateKey, pin: bytes = b"4711") -> bytes:
    return seal.seal(seal.public_key_bytes(key), pin, hub_id=HUB, context=CREDENTIAL)


def test_a_sealed_pin_opens_for_its_hub_and_credential(key) -> None:
    sealed = sealed_pin(key)

    assert open_sealed(key, sealed, hub_id=HUB, context=CREDENTIAL) == b"4711"


def test_the_wire_format_is_version_ephemeral_key_nonce_ciphertext_and_tag(key) -> None:
    sealed = sealed_pin(key, b"12345678")

    assert sealed[0] == 0x01
    assert len(sealed) == 1 + 32 + 12 + 8 + 16
    assert b"12345678" not in sealed


def test_each_seal_is_fresh(key) -> None:
    assert sealed_pin(key) != sealed_pin(key)


def test_it_matches_the_documented_construction(key) -> None:
    """Rebuild the key and AAD from the module doc with cryptography's primitives."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    sealed = sealed_pin(key, b"2468")
    ephemeral, nonce, body = sealed[1:33], sealed[33:45], sealed[45:]
    shared = key.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + seal.public_key_bytes(key),
        info=b"doorstep seal v1",
    ).derive(shared)
    aad = b"doorstep seal v1|" + HUB.encode() + b"|" + CREDENTIAL.encode()

    assert AESGCM(derived).decrypt(nonce, body, aad) == b"2468"


def test_another_hubs_key_cannot_open_it(key) -> None:
    with pytest.raises(SealError):
        open_sealed(seal.generate_key(), sealed_pin(key), hub_id=HUB, context=CREDENTIAL)


def test_it_does_not_open_under_another_hub_id(key) -> None:
    with pytest.raises(SealError):
        open_sealed(key, sealed_pin(key), hub_id=OTHER_HUB, context=CREDENTIAL)


def test_it_does_not_open_for_another_credential(key) -> None:
    with pytest.raises(SealError):
        open_sealed(key, sealed_pin(key), hub_id=HUB, context="grt-other")


@pytest.mark.parametrize("position", [0, 1, 32, 33, 44, 45, -1])
def test_a_tampered_byte_is_refused(key, position) -> None:
    sealed = bytearray(sealed_pin(key))
    sealed[position] ^= 0x01

    with pytest.raises(SealError):
        open_sealed(key, bytes(sealed), hub_id=HUB, context=CREDENTIAL)


@pytest.mark.parametrize("length", [0, 1, 33, 45, 60])
def test_a_truncated_value_is_refused(key, length) -> None:
    with pytest.raises(SealError):
        open_sealed(key, sealed_pin(key)[:length], hub_id=HUB, context=CREDENTIAL)


def test_an_oversized_value_is_refused_before_any_work(key) -> None:
    with pytest.raises(SealError, match="length"):
        open_sealed(key, b"\x01" * 10_000, hub_id=HUB, context=CREDENTIAL)


def test_errors_never_carry_the_secret(key) -> None:
    sealed = sealed_pin(key, b"97531")
    with pytest.raises(SealError) as refused:
        open_sealed(key, sealed, hub_id=OTHER_HUB, context=CREDENTIAL)

    assert "97531" not in str(refused.value)
    assert "97531" not in repr(refused.value)
    assert refused.value.__cause__ is None or "97531" not in str(refused.value.__cause__)


def test_a_bad_recipient_key_is_refused() -> None:
    with pytest.raises(SealError):
        seal.seal(b"\x00" * 31, b"1234", hub_id=HUB, context=CREDENTIAL)
    with pytest.raises(SealError):  # a low-order point: the shared secret would be all zeros
        seal.seal(b"\x00" * 32, b"1234", hub_id=HUB, context=CREDENTIAL)


def test_the_private_key_round_trips_as_32_raw_bytes(key) -> None:
    raw = seal.private_key_bytes(key)

    assert len(raw) == 32
    again = seal.private_key_from_bytes(raw)
    assert open_sealed(again, sealed_pin(key), hub_id=HUB, context=CREDENTIAL) == b"4711"
    with pytest.raises(SealError):
        seal.private_key_from_bytes(raw[:31])
