"""A home's clips at rest: encrypted objects in a `ClipStore`, keys in a `KeyStore`.

`archive` takes a `Clip` the recorder assembled, encrypts its video, thumbnail and a
JSON manifest (its times and entry) under a fresh clip key, stores them as
"<clip id>/video.mp4", "<clip id>/thumbnail.jpg" and "<clip id>/manifest.json", puts the
clip key wrapped by the home key in the key store, and removes the plaintext files.

`read` serves any byte range of the video (what an HTTP Range request needs),
decrypting only the chunks it covers. `delete` destroys the clip's key first, then the
objects: once the key is gone, nothing that survives of the ciphertext can be opened.

`clips_outside` is the privacy scan: every stored clip must lie within its entry's
recording window.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from doorstep.video.clips import Clip
from doorstep.video.crypto import (
    CHUNK_SIZE,
    HomeKey,
    KeyStore,
    ObjectCipher,
    new_clip_key,
    plaintext_size,
)
from doorstep.video.errors import ClipNotFound
from doorstep.video.storage import ClipStore

VIDEO, THUMBNAIL, MANIFEST = "video.mp4", "thumbnail.jpg", "manifest.json"
PARTS = (VIDEO, THUMBNAIL, MANIFEST)


@dataclass(frozen=True)
class StoredClip:
    """What is known of an archived clip without decrypting its video (Unix times)."""

    clip_id: str
    entry_id: str
    started_at: float
    ended_at: float
    duration: float
    armed_at: float
    disarmed_at: float
    stop_at: float
    gaps: tuple[tuple[float, float], ...]
    complete: bool
    video_bytes: int  # plaintext size of the MP4

    @classmethod
    def from_clip(cls, clip: Clip, video_bytes: int) -> StoredClip:
        names = [name for name in cls.__dataclass_fields__ if name != "video_bytes"]
        return cls(**{name: getattr(clip, name) for name in names}, video_bytes=video_bytes)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StoredClip:
        fields = json.loads(data)
        fields["gaps"] = tuple(tuple(gap) for gap in fields["gaps"])
        return cls(**fields)


class ClipVault:
    """One home's encrypted clips."""

    def __init__(
        self,
        store: ClipStore,
        keys: KeyStore,
        home_key: HomeKey,
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.store = store
        self.keys = keys
        self._home_key = home_key
        self._chunk_size = chunk_size

    def archive(self, clip: Clip) -> StoredClip:
        """Encrypt and store `clip`, then delete its plaintext files."""
        clip_key = new_clip_key()
        self.keys.put(clip.clip_id, self._home_key.wrap(clip_key, clip.clip_id))
        stored = StoredClip.from_clip(clip, clip.video.stat().st_size)
        self._put(clip_key, clip.clip_id, VIDEO, clip.video)
        self._put(clip_key, clip.clip_id, THUMBNAIL, clip.thumbnail)
        self._put_stream(clip_key, clip.clip_id, MANIFEST, io.BytesIO(stored.to_json()))
        for path in (clip.video, clip.thumbnail):
            path.unlink(missing_ok=True)
        _remove_if_empty(clip.video.parent)
        return stored

    def manifest(self, clip_id: str) -> StoredClip:
        return StoredClip.from_json(self._read_all(clip_id, MANIFEST))

    def thumbnail(self, clip_id: str) -> bytes:
        return self._read_all(clip_id, THUMBNAIL)

    def size(self, clip_id: str) -> int:
        """Plaintext bytes of the clip's video."""
        name = _name(clip_id, VIDEO)
        return plaintext_size(self._reader(name), self.store.size(name))

    def read(self, clip_id: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext bytes [start, end) of the clip's video, chunk by chunk."""
        name = _name(clip_id, VIDEO)
        stored_size = self.store.size(name)  # ClipNotFound before ClipKeyDestroyed
        cipher = ObjectCipher(self._clip_key(clip_id), name)
        return cipher.decrypt_range(self._reader(name), stored_size, start, end)

    def delete(self, clip_id: str) -> None:
        """Destroy the clip's key, then its objects. Idempotent."""
        self.keys.destroy(clip_id)
        for part in PARTS:
            self.store.delete(_name(clip_id, part))

    def clip_ids(self) -> list[str]:
        """Clips with at least one stored object."""
        return sorted({name.split("/", 1)[0] for name in self.store.list()})

    def _put(self, clip_key: bytes, clip_id: str, part: str, source: Path) -> None:
        with source.open("rb") as stream:
            self._put_stream(clip_key, clip_id, part, stream)

    def _put_stream(self, clip_key: bytes, clip_id: str, part: str, stream: BinaryIO) -> None:
        name = _name(clip_id, part)
        cipher = ObjectCipher(clip_key, name)
        self.store.put(name, cipher.encrypt(stream, chunk_size=self._chunk_size))

    def _read_all(self, clip_id: str, part: str) -> bytes:
        name = _name(clip_id, part)
        stored_size = self.store.size(name)
        cipher = ObjectCipher(self._clip_key(clip_id), name)
        return b"".join(cipher.decrypt_range(self._reader(name), stored_size))

    def _clip_key(self, clip_id: str) -> bytes:
        return self._home_key.unwrap(self.keys.get(clip_id), clip_id)

    def _reader(self, name: str) -> _RangeReader:
        return _RangeReader(self.store, name)


def clips_outside(
    vault: ClipVault,
    windows: Mapping[str, tuple[float, float]],
    *,
    slack: float = 0.0,
) -> list[StoredClip]:
    """Stored clips not inside their entry's window (entry id -> (start, end), Unix
    times, widened by `slack` on both sides), including clips of unknown entries."""
    outside = []
    for clip_id in vault.clip_ids():
        clip = vault.manifest(clip_id)
        window = windows.get(clip.entry_id)
        inside = window is not None and (
            window[0] - slack <= clip.started_at and clip.ended_at <= window[1] + slack
        )
        if not inside:
            outside.append(clip)
    return outside


class _RangeReader:
    def __init__(self, store: ClipStore, name: str) -> None:
        self._store, self._name = store, name

    def __call__(self, offset: int, length: int) -> bytes:
        return self._store.read_range(self._name, offset, length)


def _name(clip_id: str, part: str) -> str:
    if not clip_id.isalnum():
        raise ClipNotFound(f"no clip {clip_id!r}")
    return f"{clip_id}/{part}"


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()
