"""What the hub's uploader does with each kind of "no" from the service.

A refusal about the clip (its bytes never match their SHA-256, an error the service will
give at every try) drops that clip, with a log line; a refusal about the hub (401/403: its
signature is not accepted) keeps every clip and asks again rarely; anything else (the
service down or busy, a proxy's page, a chunk larger than the service takes) keeps the
clip and tries again. The service is a small HTTP server on loopback that speaks the
upload protocol (`clips.router`) and can be told to answer something else instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub.uploader import RetryPolicy, Uploader
from doorstep.video.clips import Clip

NOW = 1_800_000_000.0
PREFIX = "/v1/hub/clips"


@dataclass
class FakeService:
    """The clip service's upload routes, in memory. `answer`, when set, is what every
    request gets instead (status, body); `max_body` refuses larger bodies with 413."""

    url: str = ""
    requests: list[str] = field(default_factory=list)
    answer: tuple[int, Any] | None = None
    max_body: int | None = None
    announced: dict[str, dict[str, Any]] = field(default_factory=dict)
    held: dict[tuple[str, str], bytearray] = field(default_factory=dict)
    stored: dict[str, bytes] = field(default_factory=dict)

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        self.requests.append(f"{method} {target.split('?')[0]}")
        if self.answer is not None:
            return self.answer
        if self.max_body is not None and len(body) > self.max_body:
            return 413, _error("payload_too_large", "request body is too large")
        url = urlsplit(target)
        rest = url.path.removeprefix(PREFIX).strip("/").split("/")
        if method == "POST" and rest == [""]:
            meta = json.loads(body)
            self.announced.setdefault(meta["clip_id"], meta)
            return 200, self._status(meta["clip_id"])
        if method == "PUT":
            clip_id, part = rest
            held = self.held.setdefault((clip_id, part), bytearray())
            offset = int(parse_qs(url.query)["offset"][0])
            if offset != len(held):
                return 409, _error("upload_offset_mismatch", "no", details={"received": len(held)})
            held.extend(body)
            return 200, self._status(clip_id)
        clip_id = rest[0]
        meta = self.announced[clip_id]
        bad = [
            p for p in ("video", "thumbnail") if _digest(self.held[clip_id, p]) != meta[p]["sha256"]
        ]
        for part in bad:
            self.held[clip_id, part] = bytearray()
        if bad:
            return 422, _error("clip_checksum_mismatch", "a part did not match its SHA-256")
        self.stored[clip_id] = bytes(self.held[clip_id, "video"])
        return 200, self._status(clip_id)

    def _status(self, clip_id: str) -> dict[str, Any]:
        if clip_id in self.stored:
            return {"clip_id": clip_id, "state": "stored", "received": {}}
        received = {p: len(self.held.get((clip_id, p), b"")) for p in ("video", "thumbnail")}
        return {"clip_id": clip_id, "state": "uploading", "received": received}


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _digest(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status, answer = fake.handle(self.command, self.path, body)
            page = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header(
                "content-type", "text/html" if isinstance(answer, str) else "application/json"
            )
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        do_POST = do_PUT = _serve

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _uploader(tmp_path: Path, url: str | None, clock: Clock, **options: Any) -> Uploader:
    return Uploader(
        tmp_path / "hub",
        hub_id="hub-1",
        key=Ed25519PrivateKey.generate(),
        service_url=url,
        retry=RetryPolicy(first_seconds=5.0, max_seconds=60.0),
        clock=clock,
        **options,
    )


def _clip(tmp_path: Path, clip_id: str, video_bytes: int = 1000) -> Clip:
    folder = tmp_path / "spool" / "clips" / clip_id
    folder.mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(
        b"\0\0\0\x18ftypmp42" + bytes(range(256)) * (video_bytes // 256)
    )
    (folder / "thumbnail.jpg").write_bytes(b"\xff\xd8" + bytes(100))
    return Clip(
        clip_id=clip_id,
        entry_id="ent-1",
        video=folder / "clip.mp4",
        thumbnail=folder / "thumbnail.jpg",
        started_at=NOW - 30,
        ended_at=NOW - 10,
        duration=20.0,
        armed_at=NOW - 27,
        disarmed_at=NOW - 11,
        stop_at=NOW - 10,
        gaps=(),
        complete=True,
    )


def _queued_dir(tmp_path: Path, clip_id: str) -> Path:
    return tmp_path / "hub" / "uploads" / clip_id


A, B = "a" * 32, "b" * 32


@pytest.mark.parametrize(
    "answer",
    [
        (401, _error("hub_not_authenticated", "unknown hub")),
        (401, _error("hub_not_authenticated", "hub signature is stale or from the future")),
        (403, _error("forbidden", "not allowed")),
        (403, "<html>Blocked by the firewall</html>"),
    ],
)
def test_a_hub_the_service_refuses_keeps_every_clip_and_asks_again_rarely(
    tmp_path: Path, service: FakeService, answer: tuple[int, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Revoked, unknown, or its clock too far off: no clip can go, and none is dropped (a
    clock put right, or the hub enrolled again with its key, sends them all). One request
    per pause, not one per clip per minute; the pause doubles up to an hour."""
    clock = Clock()
    uploader = _uploader(tmp_path, service.url, clock)
    for clip_id in (A, B):
        uploader.enqueue(_clip(tmp_path, clip_id), access_point="front")
    service.answer = answer

    with caplog.at_level(logging.ERROR, logger="doorstep.hub.uploader"):
        assert uploader.run_pending() == 0
    assert service.requests == [f"POST {PREFIX}"]  # the other clip was not tried
    assert "does not accept this hub" in caplog.text
    assert [item.clip_id for item in uploader.pending()] == [A, B]
    assert all(_queued_dir(tmp_path, clip_id).is_dir() for clip_id in (A, B))

    pauses = []
    for _ in range(8):
        sent = len(service.requests)
        while len(service.requests) == sent:
            clock.now += 10
            uploader.run_pending()
        pauses.append(clock.now - NOW)
    gaps = [later - earlier for earlier, later in zip([0.0, *pauses], pauses, strict=False)]
    assert gaps == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert len(uploader.pending()) == 2

    service.answer = None  # the hub is accepted again: everything queued goes
    clock.now += 3600
    assert uploader.run_pending() == 2
    assert sorted(service.stored) == [A, B]
    assert uploader.pending() == []
    uploader.close()


@pytest.mark.parametrize(
    "answer",
    [
        (500, _error("error", "internal error")),
        (503, _error("unavailable", "the database is busy; nothing was changed, try again")),
        (429, _error("rate_limited", "slow down")),
        (502, "<html>Bad gateway</html>"),
        (404, "<html>nginx: Not Found</html>"),  # a proxy in front, not the service
        (400, "<html>Request header too large</html>"),
    ],
)
def test_a_transient_failure_keeps_the_clip_and_backs_off_to_a_cap(
    tmp_path: Path, service: FakeService, answer: tuple[int, Any]
) -> None:
    clock = Clock()
    uploader = _uploader(tmp_path, service.url, clock)
    uploader.enqueue(_clip(tmp_path, A), access_point="front")
    service.answer = answer

    delays = []
    for _ in range(6):
        [item] = uploader.pending()
        clock.now = item.next_at
        assert uploader.run_pending() == 0
        [after] = uploader.pending()
        delays.append(after.next_at - clock.now)
    assert delays == [5, 10, 20, 40, 60, 60]
    assert _queued_dir(tmp_path, A).is_dir()

    service.answer = None
    clock.now += 60
    assert uploader.run_pending() == 1
    assert list(service.stored) == [A]
    uploader.close()


def test_a_service_that_cannot_be_reached_keeps_the_clip(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"  # nothing listens there
    uploader = _uploader(tmp_path, url, Clock())
    uploader.enqueue(_clip(tmp_path, A), access_point="front")

    assert uploader.run_pending() == 0
    [item] = uploader.pending()
    assert (item.attempts, item.next_at) == (1, NOW + 5)
    assert _queued_dir(tmp_path, A).is_dir()
    uploader.close()


@pytest.mark.parametrize(
    "answer",
    [
        (404, _error("not_found", "no such entry")),
        (409, _error("conflict", "this entry already has a clip")),
        (405, _error("method_not_allowed", "Method Not Allowed")),
    ],
)
def test_a_refusal_that_will_never_change_drops_the_clip_with_a_log_line(
    tmp_path: Path, service: FakeService, answer: tuple[int, Any], caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    uploader = _uploader(tmp_path, service.url, clock)
    for clip_id in (A, B):
        uploader.enqueue(_clip(tmp_path, clip_id), access_point="front")
    service.answer = answer

    with caplog.at_level(logging.ERROR, logger="doorstep.hub.uploader"):
        assert uploader.run_pending() == 0
    assert uploader.pending() == []
    assert not _queued_dir(tmp_path, A).exists()
    assert f"clip {A} refused by the service, dropped" in caplog.text
    assert service.requests == [f"POST {PREFIX}"] * 2  # each clip had its own answer
    uploader.close()


def test_a_clip_whose_bytes_never_match_is_dropped_after_three_refusals(
    tmp_path: Path, service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    """The service discards a part that does not match its SHA-256 and the hub sends it
    again; a copy rotten on the hub's disk never will match. The count survives a
    restart of the hub."""
    clock = Clock()
    uploader = _uploader(tmp_path, service.url, clock)
    uploader.enqueue(_clip(tmp_path, A), access_point="front")
    uploader.enqueue(_clip(tmp_path, B), access_point="front")
    video = _queued_dir(tmp_path, A) / "video.mp4"
    rotten = bytearray(video.read_bytes())
    rotten[100] ^= 0x01
    video.write_bytes(bytes(rotten))

    assert uploader.run_pending() == 1  # B is stored; A is refused
    assert [item.clip_id for item in uploader.pending()] == [A]
    clock.now += 5
    assert uploader.run_pending() == 0
    assert [item.clip_id for item in uploader.pending()] == [A]
    uploader.close()

    restarted = _uploader(tmp_path, None, clock)
    clock.now += 60
    with caplog.at_level(logging.ERROR, logger="doorstep.hub.uploader"):
        assert restarted.run_pending() == 0
    assert restarted.pending() == []
    assert not _queued_dir(tmp_path, A).exists()
    assert f"clip {A} refused by the service, dropped" in caplog.text
    assert "SHA-256" in caplog.text
    assert [r for r in service.requests if r.endswith("/complete")] == [
        f"POST {PREFIX}/{A}/complete",
        f"POST {PREFIX}/{B}/complete",
        f"POST {PREFIX}/{A}/complete",
        f"POST {PREFIX}/{A}/complete",
    ]
    assert list(service.stored) == [B]
    restarted.close()


def test_a_service_that_takes_smaller_chunks_still_gets_the_clip(
    tmp_path: Path, service: FakeService
) -> None:
    """A 413 is about the chunk, not the clip (the service's
    `DOORSTEP_CLIPS__UPLOAD_CHUNK_BYTES` is smaller than the hub's chunk): the hub sends
    smaller chunks, down to the smallest the service may be set to (64 KiB)."""
    clock = Clock()
    uploader = _uploader(tmp_path, service.url, clock, chunk_bytes=1024 * 1024)
    clip = _clip(tmp_path, A, video_bytes=300 * 1024)
    video = clip.video.read_bytes()
    uploader.enqueue(clip, access_point="front")
    service.max_body = 64 * 1024

    assert uploader.run_pending() == 1
    assert service.stored == {A: video}
    assert uploader.pending() == []
    uploader.close()


def test_a_queue_from_before_the_refusal_count_is_still_sent(
    tmp_path: Path, service: FakeService
) -> None:
    """A hub updated with clips still queued in the old queue table sends them."""
    clock = Clock()
    uploader = _uploader(tmp_path, service.url, clock)
    uploader.enqueue(_clip(tmp_path, A), access_point="front")
    uploader.close()
    database = sqlite3.connect(tmp_path / "hub" / "uploads" / "queue.db")
    with database:
        row = database.execute("SELECT clip_id, meta FROM pending").fetchone()
        database.execute("DROP TABLE pending")
        database.execute(
            "CREATE TABLE pending (clip_id TEXT PRIMARY KEY, meta TEXT NOT NULL, attempts"
            " INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0)"
        )
        database.execute("INSERT INTO pending (clip_id, meta) VALUES (?, ?)", row)
    database.close()

    updated = _uploader(tmp_path, None, clock)
    assert updated.run_pending() == 1
    assert list(service.stored) == [A]
    updated.close()
