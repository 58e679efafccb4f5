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
connection, a service that is down or busy (5xx, 429), an answer that is not the
service's (a proxy's page), a hub that restarts: the clip stays queued and is tried again
with exponential backoff (capped), resuming at whatever the service holds. A chunk too
large for the service (413) is sent again in smaller chunks. A part whose checksum the
service refuses is sent again, up to `MAX_REJECTIONS` times in all (counted in the
queue): bytes that rotted on the hub's disk never match. A clip the service refuses for
good (any other 4xx in its error shape: not this hub's entry, outside the entry's
window, an entry whose clip is already stored), or whose files the hub no longer has, is
dropped and logged. Anything else that goes wrong with one clip postpones that clip
alone.

A 401 or 403 is about the hub, not the clip: its key is not (or no longer) accepted, or
its clock is too far off for its signatures. Every clip stays queued (a clock put right
sends them), and the uploader asks again after a pause that doubles from a minute to an
hour (`RetryPolicy.refused_delay`), trying one clip each time, not each clip every minute.

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
MIN_CHUNK_BYTES = 64 * 1024  # the least `clips.upload_chunk_bytes` may be set to
PARTS = {"video": "video.mp4", "thumbnail": "thumbnail.jpg"}
# The service does not accept the hub's signature: every clip waits (`HubNotAccepted`).
NOT_ACCEPTED = {401, 403}
# 4xx answers that may well be different next time: the clip waits its backoff.
TRANSIENT = {408, 425, 429}
CHECKSUM_MISMATCH = "clip_checksum_mismatch"
MAX_REJECTIONS = 3  # checksum refusals of one clip before it is given up


@dataclass(frozen=True)
class RetryPolicy:
    first_seconds: float = 0.5
    max_seconds: float = 60.0
    refused_first_seconds: float = 60.0
    refused_max_seconds: float = 3600.0

    def delay(self, attempts: int) -> float:
        return float(min(self.max_seconds, self.first_seconds * 2 ** max(0, attempts - 1)))

    def refused_delay(self, refusals: int) -> float:
        """The pause after the service refused the hub itself `refusals` times in a row."""
        doubled = self.refused_first_seconds * 2 ** max(0, refusals - 1)
        return float(min(self.refused_max_seconds, doubled))


class UploadFailed(Exception):
    """This attempt did not finish; try again later."""


class HubNotAccepted(UploadFailed):
    """The service refuses the hub's signature (401/403): no clip can go for now."""


class ChecksumRejected(UploadFailed):
    """The service discarded a part that did not match its SHA-256."""


class ChunkTooLarge(UploadFailed):
    """The service takes smaller request bodies than this chunk (413)."""


class UploadRefused(Exception):
    """The service will never take this clip."""


@dataclass(frozen=True)
class Queued:
    clip_id: str
    meta: dict[str, Any]  # what `announce` sends
    attempts: int
    next_at: float
    rejections: int = 0  # checksum refusals so far


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
        self._refusals = 0  # 401/403 answers in a row
        self._refused_until = 0.0  # no request before then
        self.uploaded: list[str] = []  # clip ids stored by the service, this run

    # ---- the queue -------------------------------------------------------------------

    def _setup(self) -> None:
        with self._db_lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS pending (clip_id TEXT PRIMARY KEY, meta TEXT NOT"
                " NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0,"
                " rejections INTEGER NOT NULL DEFAULT 0)"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
            if "rejections" not in columns:  # a queue from before the count
                self._db.execute(
                    "ALTER TABLE pending ADD COLUMN rejections INTEGER NOT NULL DEFAULT 0"
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
                "INSERT OR REPLACE INTO pending (clip_id, meta, attempts, next_at, rejections)"
                " VALUES (?, ?, 0, 0, 0)",
                (clip.clip_id, json.dumps(meta)),
            )
        self._wake.set()

    def pending(self) -> list[Queued]:
        with self._db_lock:
            rows = self._db.execute(
                "SELECT clip_id, meta, attempts, next_at, rejections FROM pending"
                " ORDER BY next_at, clip_id"
            ).fetchall()
        return [Queued(r[0], json.loads(r[1]), int(r[2]), float(r[3]), int(r[4])) for r in rows]

    def _forget(self, clip_id: str) -> None:
        with self._db_lock, self._db:
            self._db.execute("DELETE FROM pending WHERE clip_id = ?", (clip_id,))
        shutil.rmtree(self.directory / clip_id, ignore_errors=True)

    def _postpone(self, item: Queued, *, rejected: bool = False) -> None:
        attempts = item.attempts + 1
        with self._db_lock, self._db:
            self._db.execute(
                "UPDATE pending SET attempts = ?, next_at = ?, rejections = rejections + ?"
                " WHERE clip_id = ?",
                (
                    attempts,
                    self._clock() + self._retry.delay(attempts),
                    int(rejected),
                    item.clip_id,
                ),
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
            status = self._complete(item)
        if status["state"] != "stored":
            raise UploadFailed(f"the service left clip {item.clip_id} {status['state']}")

    def _complete(self, item: Queued) -> dict[str, Any]:
        try:
            return self._call("POST", f"/v1/hub/clips/{item.clip_id}/complete", b"")
        except ChecksumRejected as exc:
            if item.rejections + 1 < MAX_REJECTIONS:
                raise
            raise UploadRefused(
                f"its bytes did not match their SHA-256 {MAX_REJECTIONS} times ({exc})"
            ) from exc

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
                try:
                    status = self._call("PUT", target, chunk)
                except ChunkTooLarge:
                    if self._chunk <= MIN_CHUNK_BYTES:
                        raise
                    self._chunk = max(MIN_CHUNK_BYTES, self._chunk // 2)
                    log.warning("the service refused a chunk as too large; sending %d bytes"
                                " at a time", self._chunk)  # fmt: skip
                    file.seek(offset)
                    continue
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
        status = response.status_code
        if status == 200:
            self._refusals = 0
            return body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code", ""))
        if status == 409 and code == "upload_offset_mismatch":
            # Another attempt got further (or less far) than this one knew: go on from there.
            details = error.get("details") or {}
            return {"state": "uploading", "resume_at": int(details.get("received", 0))}
        said = f"{status} {code}: {error.get('message', '')}"
        if status in NOT_ACCEPTED:
            raise HubNotAccepted(said)
        if code == CHECKSUM_MISMATCH:
            raise ChecksumRejected(said)
        if status == 413:
            raise ChunkTooLarge(said)
        # Only the service, in its own error shape, refuses a clip for good: a proxy's
        # page in front of it (a 404 for a wrong route, a 400) says nothing of the clip.
        if code and 400 <= status < 500 and status not in TRANSIENT:
            raise UploadRefused(said)
        raise UploadFailed(said)

    # ---- the worker ---------------------------------------------------------------------

    def run_pending(self) -> int:
        """Try every clip that is due now, once; how many were stored. None while the
        service refuses the hub itself (`HubNotAccepted`)."""
        stored = 0
        for item in self.pending():
            if self._halt.is_set() or self._clock() < self._refused_until:
                break
            if item.next_at <= self._clock():
                stored += self._attempt(item)
        return stored

    def _attempt(self, item: Queued) -> int:
        try:
            self.upload(item)
        except UploadRefused as exc:
            log.error("clip %s refused by the service, dropped: %s", item.clip_id, exc)
            self._forget(item.clip_id)
            return 0
        except HubNotAccepted as exc:
            self._refused(exc)
            return 0
        except UploadFailed as exc:
            log.warning("clip %s not uploaded yet (%s); will retry", item.clip_id, exc)
            self._postpone(item, rejected=isinstance(exc, ChecksumRejected))
            return 0
        except Exception:  # one clip's edge: it waits its turn, and holds up no other clip
            log.exception("clip %s could not be uploaded; will retry", item.clip_id)
            self._postpone(item)
            return 0
        log.info("clip %s stored at the service", item.clip_id)
        self._forget(item.clip_id)
        self.uploaded.append(item.clip_id)
        return 1

    def _refused(self, exc: HubNotAccepted) -> None:
        """Pause every clip: none can go until the service accepts the hub again. None is
        dropped: a hub whose clock is off gets the same 401 as one that is revoked, and
        the clips are the resident's only video of who came in."""
        self._refusals += 1
        pause = self._retry.refused_delay(self._refusals)
        self._refused_until = self._clock() + pause
        log.error("the service does not accept this hub (%s): revoked, or its clock is off?"
                  " %d clip(s) stay queued; asking again in %.0f s",
                  exc, len(self.pending()), pause)  # fmt: skip

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
            wait = max(0.05, max(min(due), self._refused_until) - self._clock()) if due else 30.0
            self._wake.wait(min(wait, 30.0))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
