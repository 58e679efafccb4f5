"""Live view from the hub: JPEG frames of a door's camera, sent only while someone watches.

A worker long-polls the service (`GET /v1/hub/live/wanted`, signed with the hub's key,
`protocol.hubauth`) for the doors someone is watching. For each, it takes the recorder's
newest closed segment (one GOP, about a second of video: the camera's stream is read
once, by the recorder, so live view shares its spool rather than opening the camera
again), decodes it to `fps` JPEG frames `width` pixels wide with ffmpeg, and posts them
one by one at their pace (`POST /v1/hub/live/<door>/frame`). The answer to each says
whether anyone still watches; when nobody does, it goes back to waiting. The picture
is about one segment (a second) behind the camera.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.protocol import hubauth
from doorstep.video import process
from doorstep.video.errors import VideoError
from doorstep.video.segments import Segment

log = logging.getLogger(__name__)

POLL_SECONDS = 10.0
DECODE_TIMEOUT = 10.0
_EOI = b"\xff\xd9"


class SegmentSource(Protocol):
    def segments(self) -> list[Segment]: ...


class LiveStreamer:
    def __init__(
        self,
        cameras: Mapping[str, SegmentSource],
        *,
        hub_id: str,
        key: Ed25519PrivateKey,
        service_url: Callable[[], str | None],
        fps: float = 5.0,
        width: int = 320,
        ffmpeg: str = "ffmpeg",
    ) -> None:
        self.cameras: dict[str, SegmentSource] = dict(cameras)
        self._hub_id, self._key = hub_id, key
        self._service_url = service_url
        self._fps, self._width, self._ffmpeg = fps, width, ffmpeg
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._users = 0
        self.frames_sent = 0

    def retain(self) -> None:
        self._users += 1
        if self._thread is None:
            self._halt = threading.Event()  # each worker its own: an old one may linger
            self._thread = threading.Thread(
                target=self._loop, args=(self._halt,), name="live-view", daemon=True
            )
            self._thread.start()

    def release(self) -> None:
        """One user fewer; the last stops the worker. A long poll in flight is not
        interrupted: the worker leaves when it returns (within `POLL_SECONDS`)."""
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._thread is not None:
            self._halt.set()
            self._thread.join(timeout=0.5)
            self._thread = None

    def _loop(self, halt: threading.Event) -> None:
        with httpx.Client(timeout=POLL_SECONDS + 10) as http:
            while not halt.is_set():
                try:
                    wanted = self._wanted(http)
                    if wanted and not halt.is_set():
                        self._stream(http, halt, wanted)
                except (httpx.HTTPError, VideoError, RuntimeError) as exc:
                    if halt.is_set():
                        return
                    log.warning("live view: %s", exc)
                    halt.wait(2.0)
                except Exception:  # the worker's edge
                    log.exception("live view failed")
                    halt.wait(2.0)

    def _wanted(self, http: httpx.Client) -> list[str]:
        answer = self._call(http, "GET", f"/v1/hub/live/wanted?wait={POLL_SECONDS:g}", b"")
        return [point for point in answer.get("access_points", []) if point in self.cameras]

    def _stream(self, http: httpx.Client, halt: threading.Event, wanted: list[str]) -> None:
        sent: dict[str, Path] = {}
        while wanted and not halt.is_set():
            still: list[str] = []
            for point in wanted:
                segments = self.cameras[point].segments()
                newest = segments[-1] if segments else None
                if newest is None or sent.get(point) == newest.path:
                    still.append(point)
                    continue
                sent[point] = newest.path
                if self._send_segment(http, halt, point, newest.path):
                    still.append(point)
            wanted = still
            if wanted:
                halt.wait(0.1)  # the next segment closes within a GOP

    def _send_segment(
        self, http: httpx.Client, halt: threading.Event, point: str, path: Path
    ) -> bool:
        """Post the segment's frames at their pace; whether anyone still watches."""
        try:
            frames = self._decode(path)
        except VideoError:
            return True  # pruned under us, or cut short: the next one will do
        interval = 1.0 / self._fps
        watched = True
        for frame in frames:
            started = time.monotonic()
            answer = self._call(http, "POST", f"/v1/hub/live/{point}/frame", frame)
            watched = bool(answer.get("wanted"))
            self.frames_sent += 1
            if not watched or halt.wait(max(0.0, interval - (time.monotonic() - started))):
                break
        return watched

    def _decode(self, path: Path) -> list[bytes]:
        out = process.run(
            [
                *(self._ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"),
                *("-i", str(path), "-vf", f"fps={self._fps:g},scale={self._width}:-2"),
                *("-c:v", "mjpeg", "-q:v", "6", "-f", "image2pipe", "pipe:1"),
            ],
            timeout=DECODE_TIMEOUT,
        )
        return [piece + _EOI for piece in out.split(_EOI) if piece.startswith(b"\xff\xd8")]

    def _call(self, http: httpx.Client, method: str, path: str, body: bytes) -> dict[str, Any]:
        base = self._service_url()
        if not base:
            raise RuntimeError("no service URL known")
        at = int(time.time())
        header = hubauth.sign(
            self._key, hub_id=self._hub_id, method=method, path=path, body=body, at=at
        )
        response = http.request(method, base + path, content=body, headers={hubauth.HEADER: header})
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer
