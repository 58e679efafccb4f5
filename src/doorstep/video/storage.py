"""Where encrypted clip objects are kept: a small object-store interface.

`ClipStore` is shaped like an S3-compatible bucket, so one can implement it with
PutObject (multipart for a stream), GetObject with a `Range` header, DeleteObject and
ListObjectsV2: names are keys ("<clip id>/<part>"), objects are written whole and
read by byte range. Range reads return bytes rather than a stream because the vault
asks for at most `crypto.READ_BATCH` chunks (1 MiB) at a time.

The store only ever sees ciphertext (`vault.ClipVault` encrypts before `put`).

`FileClipStore` keeps each object as a 0600 file under a 0700 root, written to a
temporary name, synced and renamed into place, so a reader never sees half an object.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from doorstep.video.errors import ClipNotFound, VideoError

NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TEMPORARY_PREFIX = ".tmp-"


class ClipStore(Protocol):
    def put(self, name: str, chunks: Iterable[bytes]) -> int:
        """Store the object `name` from `chunks`, replacing any; returns its size."""
        ...

    def size(self, name: str) -> int:
        """Bytes of the stored object; ClipNotFound if there is none."""
        ...

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the object)."""
        ...

    def delete(self, name: str) -> None:
        """Remove the object; no error if it is already gone."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Names of the stored objects that start with `prefix`, sorted."""
        ...


class FileClipStore:
    """A `ClipStore` on the local filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def put(self, name: str, chunks: Iterable[bytes]) -> int:
        path = self._path(name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}")
        written = 0
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                for chunk in chunks:
                    written += file.write(chunk)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return written

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError as exc:
            raise ClipNotFound(f"no stored object {name}") from exc

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            with self._path(name).open("rb") as file:
                file.seek(offset)
                return file.read(length)
        except FileNotFoundError as exc:
            raise ClipNotFound(f"no stored object {name}") from exc

    def delete(self, name: str) -> None:
        path = self._path(name)
        path.unlink(missing_ok=True)
        for parent in path.relative_to(self.root).parents:
            if parent == Path("."):
                break
            try:
                (self.root / parent).rmdir()
            except OSError:
                break  # not empty

    def list(self, prefix: str = "") -> list[str]:
        names = (
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(TEMPORARY_PREFIX)
        )
        return sorted(name for name in names if name.startswith(prefix))

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if not all(NAME_PART.fullmatch(part) for part in parts):
            raise VideoError(f"invalid object name {name!r}")
        return self.root.joinpath(*parts)
