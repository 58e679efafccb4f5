"""Clip encryption at rest: a random AES-256-GCM key per clip, wrapped by the home's key.

Every stored object of a clip (video, thumbnail, manifest) is encrypted in fixed-size
chunks, so an HTTP range request decrypts only the chunks it touches. Format (integers
big-endian):

    header  = "DSCLIP01" | chunk_size: u32 | salt: 16 random bytes          (28 bytes)
    chunk i = AES-256-GCM(subkey, nonce_i, plaintext_i, aad_i)   (len(plaintext_i) + 16)
    subkey  = HKDF-SHA256(clip key, salt, info="doorstep clip object v1")
    nonce_i = 4 zero bytes | i: u64
    aad_i   = header | len(object_id): u16 | object_id | i: u64 | final: u8

`object_id` is "<clip id>/<part>", so a chunk cannot be moved to another clip, another
part, or another position; `final` is 1 on the last chunk only, so cutting whole chunks
off the end is detected. Every chunk holds `chunk_size` bytes of plaintext but the last
(1 to chunk_size bytes; an empty object is one empty final chunk). The fresh salt gives
each object its own subkey, so counter nonces never repeat under one key, even if the
same clip key encrypted the same part twice.

The clip key is wrapped by the per-home key with AES-256-GCM (`wrap_clip_key`), binding
the clip id as associated data: version 0x01 | nonce (12) | ciphertext and tag (48).
Wrapped keys live in a `KeyStore`, apart from the ciphertext. Deleting a clip destroys
its wrapped key first: from then on no copy of the ciphertext, wherever it survives
(a backup, a disk block), can be decrypted, even by someone holding the home key.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from doorstep.video.errors import ClipIntegrityError, ClipKeyDestroyed, VideoError

MAGIC = b"DSCLIP01"
HEADER = struct.Struct(">8sI16s")
TAG_SIZE = 16
KEY_SIZE = 32
CHUNK_SIZE = 64 * 1024
WRAP_VERSION = 1
WRAP_AAD = b"doorstep clip key v1 "
SUBKEY_INFO = b"doorstep clip object v1"
READ_BATCH = 16  # chunks fetched per range read (1 MiB with the default chunk size)

Reader = Callable[[int, int], bytes]  # (offset, length) -> bytes of the stored object


# ---- keys ---------------------------------------------------------------------------


def new_clip_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


class HomeKey:
    """The per-home key-encryption key. It never encrypts video itself."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_SIZE:
            raise VideoError("a home key is 32 bytes")
        self._aead = AESGCM(secret)
        self.secret = secret

    @classmethod
    def generate(cls) -> HomeKey:
        return cls(AESGCM.generate_key(bit_length=256))

    @classmethod
    def load_or_create(cls, path: Path) -> HomeKey:
        """Read the key from `path`, or create it there (0600) on first use."""
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            key = cls.generate()
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(key.secret)
            return key

    def wrap(self, clip_key: bytes, clip_id: str) -> bytes:
        """`clip_key` encrypted under this home key, bound to `clip_id`."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, clip_key, WRAP_AAD + clip_id.encode())
        return bytes([WRAP_VERSION]) + nonce + sealed

    def unwrap(self, wrapped: bytes, clip_id: str) -> bytes:
        """The clip key; ClipIntegrityError if `wrapped` is not this home's key for
        `clip_id`."""
        if len(wrapped) != 1 + 12 + KEY_SIZE + TAG_SIZE or wrapped[0] != WRAP_VERSION:
            raise ClipIntegrityError("malformed wrapped clip key")
        try:
            return self._aead.decrypt(wrapped[1:13], wrapped[13:], WRAP_AAD + clip_id.encode())
        except InvalidTag as exc:
            raise ClipIntegrityError("wrapped clip key does not open") from exc


class KeyStore(Protocol):
    """Where wrapped clip keys live, apart from the ciphertext."""

    def put(self, clip_id: str, wrapped: bytes) -> None: ...

    def get(self, clip_id: str) -> bytes:
        """The wrapped key; ClipKeyDestroyed if there is none (any more)."""
        ...

    def destroy(self, clip_id: str) -> None:
        """Remove the wrapped key for good; no error if it is already gone."""
        ...

    def ids(self) -> list[str]: ...


class FileKeyStore:
    """One 0600 file per wrapped key in a 0700 directory.

    `destroy` overwrites the file with zeros, syncs and unlinks it. On copy-on-write or
    flash storage an overwrite may not reach the old blocks: the guarantee that holds
    everywhere is that the key is gone from this store. Keep this directory out of
    backups (or back it up separately, and expire those copies), since a backup of a
    wrapped key plus the home key would still open its clip."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def put(self, clip_id: str, wrapped: bytes) -> None:
        path = self._path(clip_id)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(wrapped)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)

    def get(self, clip_id: str) -> bytes:
        try:
            return self._path(clip_id).read_bytes()
        except FileNotFoundError as exc:
            raise ClipKeyDestroyed(f"clip {clip_id} has no key") from exc

    def destroy(self, clip_id: str) -> None:
        path = self._path(clip_id)
        try:
            with path.open("r+b") as file:
                file.write(bytes(path.stat().st_size))
                file.flush()
                os.fsync(file.fileno())
        except FileNotFoundError:
            return
        path.unlink(missing_ok=True)

    def ids(self) -> list[str]:
        return sorted(path.stem for path in self.directory.glob("*.key"))

    def _path(self, clip_id: str) -> Path:
        if not clip_id.isalnum():
            raise VideoError(f"invalid clip id {clip_id!r}")
        return self.directory / f"{clip_id}.key"


# ---- chunked objects ----------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where each chunk of one encrypted object lies."""

    chunk_size: int
    stored_size: int  # bytes of the encrypted object, header included

    @property
    def chunks(self) -> int:
        body = self.stored_size - HEADER.size
        return -(-body // (self.chunk_size + TAG_SIZE))

    @property
    def plaintext_size(self) -> int:
        return self.stored_size - HEADER.size - self.chunks * TAG_SIZE

    def offset(self, index: int) -> int:
        return HEADER.size + index * (self.chunk_size + TAG_SIZE)

    def check(self) -> None:
        body = self.stored_size - HEADER.size
        last = body - (self.chunks - 1) * (self.chunk_size + TAG_SIZE)
        if self.chunk_size <= 0 or body < TAG_SIZE or last < TAG_SIZE:
            raise ClipIntegrityError("encrypted object has an impossible size")


class ObjectCipher:
    """Encrypts or decrypts one object (`object_id`) of one clip under its clip key."""

    def __init__(self, clip_key: bytes, object_id: str) -> None:
        self._clip_key = clip_key
        self._object_id = object_id.encode()

    def encrypt(self, source: BinaryIO, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The encrypted object, header first, one chunk at a time."""
        header = HEADER.pack(MAGIC, chunk_size, os.urandom(16))
        aead = self._aead(header)
        yield header
        current = source.read(chunk_size)
        index = 0
        while True:
            following = source.read(chunk_size)
            final = not following
            yield aead.encrypt(_nonce(index), current, self._aad(header, index, final))
            if final:
                return
            current, index = following, index + 1

    def decrypt_range(
        self, read: Reader, stored_size: int, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """Plaintext bytes [start, end) of the object, reading only the chunks that hold
        them through `read(offset, length)`."""
        header = read(0, HEADER.size)
        layout = _layout(header, stored_size)
        end = layout.plaintext_size if end is None else min(end, layout.plaintext_size)
        aead = self._aead(header)
        if layout.plaintext_size == 0:  # still authenticate the one empty chunk
            self._open(aead, header, 0, True, read(layout.offset(0), TAG_SIZE))
        if start >= end:
            return
        size = layout.chunk_size
        first, last = start // size, (end - 1) // size
        for batch in range(first, last + 1, READ_BATCH):
            indexes = range(batch, min(batch + READ_BATCH, last + 1))
            offset = layout.offset(indexes[0])
            data = read(offset, min(layout.offset(indexes[-1] + 1), stored_size) - offset)
            for index in indexes:
                low = (index - indexes[0]) * (size + TAG_SIZE)
                piece = data[low : low + size + TAG_SIZE]
                final = index == layout.chunks - 1
                plain = self._open(aead, header, index, final, piece)
                cut_from = start - index * size if index == first else 0
                cut_to = end - index * size if index == last else len(plain)
                yield plain[cut_from:cut_to]

    def decrypt_all(self, chunks: Iterable[bytes]) -> bytes:
        """The whole plaintext of an object given as its stored bytes."""
        stored = b"".join(chunks)
        return b"".join(self.decrypt_range(_slicer(stored), len(stored)))

    def _aead(self, header: bytes) -> AESGCM:
        _, _, salt = HEADER.unpack(header)
        subkey = HKDF(hashes.SHA256(), KEY_SIZE, salt, SUBKEY_INFO).derive(self._clip_key)
        return AESGCM(subkey)

    def _aad(self, header: bytes, index: int, final: bool) -> bytes:
        return (
            header
            + struct.pack(">H", len(self._object_id))
            + self._object_id
            + struct.pack(">QB", index, final)
        )

    def _open(self, aead: AESGCM, header: bytes, index: int, final: bool, piece: bytes) -> bytes:
        try:
            return aead.decrypt(_nonce(index), piece, self._aad(header, index, final))
        except InvalidTag as exc:
            raise ClipIntegrityError(f"chunk {index} of {self._object_id.decode()}") from exc


def plaintext_size(read: Reader, stored_size: int) -> int:
    """The plaintext length of an encrypted object, from its header and size."""
    return _layout(read(0, HEADER.size), stored_size).plaintext_size


def _layout(header: bytes, stored_size: int) -> Layout:
    if len(header) != HEADER.size or header[: len(MAGIC)] != MAGIC:
        raise ClipIntegrityError("not an encrypted clip object")
    _, chunk_size, _ = HEADER.unpack(header)
    layout = Layout(chunk_size, stored_size)
    layout.check()
    return layout


def _nonce(index: int) -> bytes:
    return struct.pack(">IQ", 0, index)


def _slicer(data: bytes) -> Reader:
    return lambda offset, length: data[offset : offset + length]
