"""Camera liveness from what the recorder's ffmpeg sees: a frame counter and keyframes.

Two signals, both from the recorder's own ffmpeg (no second connection to the camera):
- The frame counter: ffmpeg's `-progress` report (`frame=N`, every 0.25 s while frames
  flow) counts the video packets written to the segments. No increase for
  `stalled_after` seconds means STALLED: the camera is gone, or its stream is.
- Keyframe thumbnails: ffmpeg decodes keyframes only (`-skip_frame nokey`, about one a
  second with a 1 s GOP) and shrinks each to 64x36 gray. That costs one decode per
  GOP instead of every frame. Each thumbnail is hashed (`frame_hash`, the heartbeat),
  and compared with the first thumbnail of the current run of unchanged pictures: when
  every pixel stays within `still_tolerance` grey levels for `frozen_after` seconds
  (and over at least two keyframes), the camera is FROZEN: frames arrive, but the
  picture does not move. A byte-identical replay gives the same hash; a still that is
  re-encoded differs only by a level or two, which the tolerance absorbs, while a live
  camera's on-screen clock alone moves some thumbnail pixels by far more.

So a live camera whose picture has no clock, no noise and no motion would read as
frozen; real cameras overlay a clock, and so does the simulated one.

The monitor is fed by reader threads and read by anyone: all state is under one lock.
Time comes from `clock` (monotonic seconds), passed in so tests can drive it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

THUMB_WIDTH, THUMB_HEIGHT = 64, 36
THUMB_BYTES = THUMB_WIDTH * THUMB_HEIGHT


class CameraState(StrEnum):
    STARTING = "starting"  # no frame yet, still within the start-up grace
    LIVE = "live"
    STALLED = "stalled"  # no new frame for `stalled_after` seconds
    FROZEN = "frozen"  # frames arrive, the picture has not changed for `frozen_after`


@dataclass(frozen=True)
class Liveness:
    """One heartbeat: the camera's state and the evidence for it."""

    state: CameraState
    frames: int  # video frames received since the recorder started
    keyframes: int
    frame_hash: str | None  # 16 hex digits of SHA-256 over the latest keyframe thumbnail
    frame_age: float | None  # seconds since the frame counter last moved
    still_for: float  # seconds the picture has stayed the same (0: it is changing)

    @property
    def live(self) -> bool:
        return self.state is CameraState.LIVE


class LivenessMonitor:
    """Turns ffmpeg's frame counts and keyframe thumbnails into a `Liveness`."""

    def __init__(
        self,
        *,
        stalled_after: float = 2.0,
        frozen_after: float = 3.0,
        still_tolerance: int = 4,
        startup_grace: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stalled_after = stalled_after
        self.frozen_after = frozen_after
        self.still_tolerance = still_tolerance
        self._clock = clock
        self._lock = threading.Lock()
        self._frames_before = 0  # frames counted by earlier ffmpeg runs
        self._frames_now = 0  # this run's counter
        self._moved_at: float | None = None
        self._deadline = clock() + startup_grace  # first frame expected by then
        self._keyframes = 0
        self._hash: str | None = None
        self._anchor: npt.NDArray[np.int16] | None = None  # first picture of the still run
        self._anchor_at = 0.0
        self._run_length = 0

    def restarted(self) -> None:
        """ffmpeg was restarted: its counter starts again from zero."""
        with self._lock:
            self._frames_before += self._frames_now
            self._frames_now = 0

    def on_progress(self, frames: int) -> None:
        """ffmpeg reported `frames` video frames written in its current run."""
        with self._lock:
            if frames > self._frames_now:
                self._frames_now = frames
                self._moved_at = self._clock()

    def on_keyframe(self, thumbnail: bytes) -> None:
        """One decoded keyframe, as THUMB_WIDTH x THUMB_HEIGHT 8-bit gray pixels."""
        picture = np.frombuffer(thumbnail, dtype=np.uint8).astype(np.int16)
        digest = hashlib.sha256(thumbnail).hexdigest()[:16]
        with self._lock:
            self._keyframes += 1
            self._hash = digest
            if self._anchor is not None and self._same(picture, self._anchor):
                self._run_length += 1
                return
            self._anchor, self._anchor_at, self._run_length = picture, self._clock(), 1

    def status(self) -> Liveness:
        """The state now, from the latest counts and pictures."""
        with self._lock:
            now = self._clock()
            age = None if self._moved_at is None else now - self._moved_at
            still_for = now - self._anchor_at if self._run_length >= 2 else 0.0
            return Liveness(
                state=self._state(now, age, still_for),
                frames=self._frames_before + self._frames_now,
                keyframes=self._keyframes,
                frame_hash=self._hash,
                frame_age=age,
                still_for=still_for,
            )

    def _state(self, now: float, age: float | None, still_for: float) -> CameraState:
        if age is None:
            return CameraState.STARTING if now < self._deadline else CameraState.STALLED
        if age >= self.stalled_after:
            return CameraState.STALLED
        if still_for >= self.frozen_after:
            return CameraState.FROZEN
        return CameraState.LIVE

    def _same(self, picture: npt.NDArray[np.int16], anchor: npt.NDArray[np.int16]) -> bool:
        return picture.shape == anchor.shape and bool(
            np.abs(picture - anchor).max() <= self.still_tolerance
        )
