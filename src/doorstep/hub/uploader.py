"""The hub's clip uploader: a durable queue of recorded clips, sent to the service.

When the recorder has assembled an entry's clip (`hub.camera.RecorderCamera`), `enqueue`
moves its files out of the recorder's spool (which is cleared when the recorder starts)
into `<data dir>/uploads/<clip id>/`, computes the SHA-256 and size of each part, and
records the clip in `<data dir>/uploads/queue.db` (SQLite, WAL, synchronous=FULL) before
it returns. A worker thread sends what is queued:

1. `POST /v1/hub/clips` announces the clip (its times, each part's size and SHA-256);
   the answer says how many bytes of each part the service already holds.
2. `PUT /v1/hub/clips/<clip>/<part>?offset=N` sends each part from there, in chunks.
3. `POST /v1/hub/clips/<clip>/complete`: the service checks the checksums and stores
   the clip encrypted. Then the hub forgets it (files and queue row).

Every request is signed with the hub's Ed25519 key (`protocol.hubauth`). A dropped
connection, a service that is down, a hub that restarts, a checksum the service
refuses: the clip stays queued and is tried again with exponential backoff (capped),
resuming at whatever the service holds. A clip the service refuses for good (not this
hub's entry, outside the entry's window, an entry whose clip is already stored), or whose
files the hub no longer has, is dropped and logged. Anything else that goes wrong with one
clip postpones that clip alone.

The service URL is the one the hub enrolled with (`--service`), remembered in the queue,
so a hub restarted without it still uploads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.protocol import hubauth
from doorstep.video.clips import Clip

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024  # the service's default `clips.upload_chunk_bytes`
PARTS = {"video": "video.mp4", "thumbnail": "thumbnail.jpg"}
# Answers that will never change by trying again: the clip is dropped.
PERMANENT = {400, 403, 404, 413}
PERMANENT_CODES = {"clip_outside_entry", "invalid_request", "conflict"}


@dataclass(frozen=True)
class RetryPolicy:
    first_seconds: float = 0.5
    max_seconds: float = 60.0

    def delay(self, attempts: int) -> float:
        return float(min(self.max_seconds, self.first_seconds * 2 ** max(0, attempts - 1)))


class UploadFailed(Exception):
    """This attempt did not finish; try again later."""


class UploadRefused(Exception):
    """The service will never take this clip."""


@dataclass(frozen=True)
class Queued:
    clip_id: str
    meta: dict[str, Any]  # what `announce` sends
    attempts: int
    next_at: float


class Uploader:
    def __init__(
        self,
        data_dir: Path,
        *,
        hub_id: str,
        key: Ed25519PrivateKey,
        service_url: str | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        self.directory = data_dir / "uploads"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.hub_id = hub_id
        self._key = key
        self._chunk = chunk_bytes
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._db = sqlite3.connect(self.directory / "queue.db", check_same_thread=False)
        self._db_lock = threading.Lock()
        self._setup()
        self._clear_unqueued()
        if service_url:
            self._remember("service_url", service_url.rstrip("/"))
        self.service_url = self._recall("service_url")
        self._timeout = timeout
        self._http = httpx.Client(timeout=timeout)
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._users = 0
        self._draining = False  # `drain`: the worker stops once the queue is empty
        self.uploaded: list[str] = []  # clip ids stored by the service, this run

    # ---- the queue -------------------------------------------------------------------

    def _setup(self) -> None:
        with self._db_lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS pending (clip_id TEXT PRIMARY KEY, meta TEXT NOT"
                " NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT)"
            )

    def _clear_unqueued(self) -> None:
        """Delete the files of any clip a process that died in `enqueue` never queued:
        its recorder still holds the entry's window (a clip is handed over before the
        window is let go) and cuts the clip again, so these are only plaintext left over."""
        with self._db_lock:
            queued = {row[0] for row in self._db.execute("SELECT clip_id FROM pending")}
        for folder in self.directory.iterdir():
            if folder.is_dir() and folder.name not in queued:
                log.warning("deleting clip %s, never queued: its entry's video is cut again",
                            folder.name)  # fmt: skip
                shutil.rmtree(folder, ignore_errors=True)

    def _remember(self, name: str, value: str) -> None:
        with self._db_lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (name, value))

    def _recall(self, name: str) -> str | None:
        with self._db_lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def enqueue(self, clip: Clip, *, access_point: str) -> None:
        """Take the clip's files over from the recorder and queue the clip, durably."""
        folder = self.directory / clip.clip_id
        folder.mkdir(mode=0o700, exist_ok=True)
        parts = {}
        for part, source in (("video", clip.video), ("thumbnail", clip.thumbnail)):
            target = folder / PARTS[part]
            shutil.move(source, target)
            parts[part] = {"size": target.stat().st_size, "sha256": _sha256(target)}
        shutil.rmtree(clip.video.parent, ignore_errors=True)
        fields = {k: v for k, v in asdict(clip).items() if k not in ("video", "thumbnail")}
        meta = {**fields, "access_point": access_point, **parts}
        meta["gaps"] = [list(gap) for gap in clip.gaps]
        with self._db_lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO pending (clip_id, meta, attempts, next_at)"
                " VALUES (?, ?, 0, 0)",
                (clip.clip_id, json.dumps(meta)),
            )
        self._wake.set()

    def pending(self) -> list[Queued]:
        with self._db_lock:
            rows = self._db.execute(
                "SELECT clip_id, meta, attempts, next_at FROM pending ORDER BY next_at, clip_id"
            ).fetchall()
        return [Queued(r[0], json.loads(r[1]), int(r[2]), float(r[3])) for r in rows]

    def _forget(self, clip_id: str) -> None:
        with self._db_lock, self._db:
            self._db.execute("DELETE FROM pending WHERE clip_id = ?", (clip_id,))
        shutil.rmtree(self.directory / clip_id, ignore_errors=True)

    def _postpone(self, item: Queued) -> None:
        attempts = item.attempts + 1
        with self._db_lock, self._db:
            self._db.execute(
                "UPDATE pending SET attempts = ?, next_at = ? WHERE clip_id = ?",
                (attempts, self._clock() + self._retry.delay(attempts), item.clip_id),
            )

    # ---- one upload -------------------------------------------------------------------

    def upload(self, item: Queued) -> None:
        """One attempt at the whole clip, resuming where the service stands. UploadFailed
        (try again) or UploadRefused (never)."""
        status = self._call("POST", "/v1/hub/clips", json.dumps(item.meta).encode())
        if status["state"] == "deleted":  # by the resident, or abandoned long ago
            raise UploadRefused(f"the service deleted clip {item.clip_id}")
        if status["state"] == "uploading":
            for part in PARTS:
                self._send_part(item, part, int(status["received"].get(part, 0)))
            status = self._call("POST", f"/v1/hub/clips/{item.clip_id}/complete", b"")
        if status["state"] != "stored":
            raise UploadFailed(f"the service left clip {item.clip_id} {status['state']}")

    def _send_part(self, item: Queued, part: str, offset: int) -> None:
        path = self.directory / item.clip_id / PARTS[part]
        size = int(item.meta[part]["size"])
        if not path.is_file():  # the hub lost it (a partial restore): it can never be sent
            raise UploadRefused(f"{path.name} of clip {item.clip_id} is gone from disk")
        with path.open("rb") as file:
            file.seek(offset)
            while offset < size:
                chunk = file.read(self._chunk)
                if not chunk:
                    raise UploadRefused(f"{path.name} of clip {item.clip_id} shrank on disk")
                target = f"/v1/hub/clips/{item.clip_id}/{part}?offset={offset}"
                status = self._call("PUT", target, chunk)
                if status["state"] != "uploading":
                    return
                offset = int(status.get("resume_at", status["received"][part]))
                file.seek(offset)

    def _call(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        if not self.service_url:
            raise UploadFailed("no service URL known (enroll with --service)")
        at = int(self._clock())
        header = hubauth.sign(
            self._key, hub_id=self.hub_id, method=method, path=path, body=body, at=at
        )
        try:
            response = self._http.request(
                method,
                self.service_url + path,
                content=body,
                headers={hubauth.HEADER: header, "content-type": "application/octet-stream"},
            )
        except httpx.HTTPError as exc:
            raise UploadFailed(f"{method} {path.split('?')[0]}: {type(exc).__name__}") from exc
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            return body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        code = str(error.get("code", ""))
        if response.status_code == 409 and code == "upload_offset_mismatch":
            # Another attempt got further (or less far) than this one knew: go on from there.
            details = error.get("details") or {}
            return {"state": "uploading", "resume_at": int(details.get("received", 0))}
        if response.status_code in PERMANENT or code in PERMANENT_CODES:
            raise UploadRefused(f"{response.status_code} {code}: {error.get('message', '')}")
        raise UploadFailed(f"{response.status_code} {code}: {error.get('message', '')}")

    # ---- the worker ---------------------------------------------------------------------

    def run_pending(self) -> int:
        """Try every clip that is due now, once; how many were stored."""
        stored = 0
        for item in self.pending():
            if item.next_at > self._clock() or self._halt.is_set():
                continue
            stored += self._attempt(item)
        return stored

    def _attempt(self, item: Queued) -> int:
        try:
            self.upload(item)
        except UploadRefused as exc:
            log.error("clip %s refused by the service, dropped: %s", item.clip_id, exc)
            self._forget(item.clip_id)
            return 0
        except UploadFailed as exc:
            log.warning("clip %s not uploaded yet (%s); will retry", item.clip_id, exc)
            self._postpone(item)
            return 0
        except Exception:  # one clip's edge: it waits its turn, and holds up no other clip
            log.exception("clip %s could not be uploaded; will retry", item.clip_id)
            self._postpone(item)
            return 0
        log.info("clip %s stored at the service", item.clip_id)
        self._forget(item.clip_id)
        self.uploaded.append(item.clip_id)
        return 1

    def retain(self) -> None:
        """One more user (a camera); the first starts the worker."""
        self._users += 1
        if self._thread is None:
            self._halt.clear()
            self._thread = threading.Thread(target=self._loop, name="clip-uploader", daemon=True)
            self._thread.start()

    def release(self) -> None:
        """One user fewer; the last stops the worker (what is queued stays queued)."""
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._thread is not None:
            self._halt.set()
            self._wake.set()
            self._thread.join(timeout=30)
            self._thread = None
            self._http.close()
            self._http = httpx.Client(timeout=self._timeout)

    def drain(self) -> None:
        """Send what is queued, then stop: for a hub with no camera left to keep the
        worker running (a camera's clips salvaged after it was removed, or queued before).
        What is still queued when the hub stops is sent at its next start."""
        self._draining = True
        self.retain()

    def close(self) -> None:
        self._users = 1
        self.release()
        self._http.close()
        with self._db_lock:
            self._db.close()

    def _loop(self) -> None:
        while not self._halt.is_set():
            self._wake.clear()
            try:
                self.run_pending()
            except Exception:  # the worker's edge: log and carry on
                log.exception("clip upload round failed")
            due = [item.next_at for item in self.pending()]
            if not due and self._draining:
                return
            wait = max(0.05, min(due) - self._clock()) if due else 30.0
            self._wake.wait(min(wait, 30.0))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
