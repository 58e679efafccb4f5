"""The hub's uploader against an answer it cannot read (a captive portal's page with a 200,
a proxy's error page): each clip stays queued and waits its backoff; none holds up the
others, and none is tried again at once, round after round."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub.uploader import RetryPolicy, Uploader
from doorstep.video.clips import Clip

NOW = 1_800_000_000.0


@pytest.fixture
def portal() -> Iterator[tuple[str, list[str]]]:
    """A captive portal: every request gets its sign-in page, with a 200."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            requests.append(self.path)
            page = b"<html>Sign in to the hotspot</html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def _clip(tmp_path: Path, clip_id: str) -> Clip:
    folder = tmp_path / "spool" / "clips" / clip_id
    folder.mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + bytes(1000))
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


def test_an_answer_the_hub_cannot_read_postpones_each_clip_and_blocks_none(
    tmp_path: Path, portal: tuple[str, list[str]]
) -> None:
    url, requests = portal
    uploader = Uploader(
        tmp_path / "hub",
        hub_id="hub-1",
        key=Ed25519PrivateKey.generate(),
        service_url=url,
        retry=RetryPolicy(first_seconds=5.0),
        clock=lambda: NOW,
    )
    for clip_id in ("a" * 32, "b" * 32):
        uploader.enqueue(_clip(tmp_path, clip_id), access_point="front")

    assert uploader.run_pending() == 0
    queued = uploader.pending()
    assert [(item.clip_id, item.attempts, item.next_at) for item in queued] == [
        ("a" * 32, 1, NOW + 5.0),
        ("b" * 32, 1, NOW + 5.0),
    ]
    assert requests == ["/v1/hub/clips", "/v1/hub/clips"]  # each clip had its turn
    # Not due yet: the next round sends nothing.
    assert uploader.run_pending() == 0
    assert len(requests) == 2
    assert all((tmp_path / "hub" / "uploads" / item.clip_id).is_dir() for item in queued)
    uploader.close()
