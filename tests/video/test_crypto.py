"""Chunked AES-256-GCM clip objects and wrapped clip keys."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from doorstep.video.crypto import (
    HEADER,
    TAG_SIZE,
    FileKeyStore,
    HomeKey,
    ObjectCipher,
    new_clip_key,
    plaintext_size,
)
from doorstep.video.errors import ClipIntegrityError, ClipKeyDestroyed

CHUNK = 1024
OBJECT = "0123456789abcdef0123456789abcdef/video.mp4"


def encrypt(data: bytes, key: bytes, object_id: str = OBJECT) -> bytes:
    return b"".join(ObjectCipher(key, object_id).encrypt(io.BytesIO(data), chunk_size=CHUNK))


def reader(stored: bytes):  # type: ignore[no-untyped-def]
    return lambda offset, length: stored[offset : offset + length]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17])
def test_round_trip(size: int) -> None:
    key, data = new_clip_key(), os.urandom(size)
    stored = encrypt(data, key)
    chunks = max(1, -(-size // CHUNK))
    assert len(stored) == HEADER.size + size + chunks * TAG_SIZE
    assert plaintext_size(reader(stored), len(stored)) == size
    assert ObjectCipher(key, OBJECT).decrypt_all([stored]) == data


def test_ciphertext_does_not_show_the_plaintext() -> None:
    data = b"\x00\x00\x00\x20ftypisom" * 500
    stored = encrypt(data, new_clip_key())
    assert b"ftyp" not in stored


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 1), (CHUNK - 1, CHUNK + 1), (CHUNK, 2 * CHUNK), (17, 4 * CHUNK + 3), (5000, 10**9)],
)
def test_range_reads_decrypt_only_the_chunks_they_touch(start: int, end: int) -> None:
    key, data = new_clip_key(), os.urandom(5 * CHUNK + 17)
    stored = encrypt(data, key)
    touched: list[tuple[int, int]] = []

    def read(offset: int, length: int) -> bytes:
        touched.append((offset, length))
        return stored[offset : offset + length]

    plain = b"".join(ObjectCipher(key, OBJECT).decrypt_range(read, len(stored), start, end))
    assert plain == data[start:end]
    fetched = sum(length for _, length in touched[1:])  # after the header
    wanted_chunks = (min(end, len(data)) - 1) // CHUNK - start // CHUNK + 1
    assert fetched <= wanted_chunks * (CHUNK + TAG_SIZE)


@pytest.mark.parametrize("position", [0, 8, HEADER.size, HEADER.size + CHUNK + 5, -1])
def test_a_flipped_byte_anywhere_is_detected(position: int) -> None:
    key = new_clip_key()
    stored = bytearray(encrypt(os.urandom(3 * CHUNK), key))
    stored[position] ^= 0x01
    with pytest.raises(ClipIntegrityError):
        ObjectCipher(key, OBJECT).decrypt_all([bytes(stored)])


def test_cutting_off_whole_chunks_is_detected() -> None:
    key = new_clip_key()
    stored = encrypt(os.urandom(3 * CHUNK), key)
    with pytest.raises(ClipIntegrityError):
        ObjectCipher(key, OBJECT).decrypt_all([stored[: HEADER.size + 2 * (CHUNK + TAG_SIZE)]])


def test_swapping_chunks_is_detected() -> None:
    key = new_clip_key()
    stored = encrypt(os.urandom(3 * CHUNK), key)
    body = stored[HEADER.size :]
    first, second = body[: CHUNK + TAG_SIZE], body[CHUNK + TAG_SIZE : 2 * (CHUNK + TAG_SIZE)]
    swapped = stored[: HEADER.size] + second + first + body[2 * (CHUNK + TAG_SIZE) :]
    with pytest.raises(ClipIntegrityError):
        ObjectCipher(key, OBJECT).decrypt_all([swapped])


def test_an_object_cannot_be_read_as_another_clip_or_part_or_with_another_key() -> None:
    key = new_clip_key()
    stored = encrypt(b"parcel" * 100, key)
    for other_key, other_object in [
        (key, "ffffffffffffffffffffffffffffffff/video.mp4"),
        (key, OBJECT.replace("video.mp4", "thumbnail.jpg")),
        (new_clip_key(), OBJECT),
    ]:
        with pytest.raises(ClipIntegrityError):
            ObjectCipher(other_key, other_object).decrypt_all([stored])


def test_clip_keys_are_wrapped_for_one_clip_and_one_home() -> None:
    home, clip_key = HomeKey.generate(), new_clip_key()
    wrapped = home.wrap(clip_key, "c1")
    assert clip_key not in wrapped
    assert home.unwrap(wrapped, "c1") == clip_key
    with pytest.raises(ClipIntegrityError):
        home.unwrap(wrapped, "c2")
    with pytest.raises(ClipIntegrityError):
        HomeKey.generate().unwrap(wrapped, "c1")


def test_home_key_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "home.key"
    first = HomeKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert HomeKey.load_or_create(path).secret == first.secret


def test_file_key_store_destroys_keys(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    keys.put("c1", b"w" * 61)
    assert keys.ids() == ["c1"]
    assert (tmp_path / "keys" / "c1.key").stat().st_mode & 0o777 == 0o600
    keys.destroy("c1")
    keys.destroy("c1")  # idempotent
    assert keys.ids() == []
    with pytest.raises(ClipKeyDestroyed):
        keys.get("c1")
