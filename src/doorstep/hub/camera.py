"""The hub's camera for one door: recording armed by entries, and its liveness.

Camera first (DESIGN principle 3): a door with a camera opens only while the camera is
live (new frames, a changing picture); recording is armed before the bolt moves, so every
clip starts before the unlock (the recorder keeps a short pre-roll); it is disarmed after
the verified relock plus a post-roll. A camera that stalls or freezes during an entry is
reported at once (`camera_lost`). The recording itself is `doorstep.video.Recorder`
(ffmpeg, stream copy); the clip stays in the hub's data directory for now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from doorstep.video.clips import Clip
from doorstep.video.liveness import Liveness
from doorstep.video.recorder import Recorder, RecorderOptions

__all__ = ["EntryCamera", "RecorderCamera", "RecorderOptions"]

log = logging.getLogger(__name__)

POST_ROLL_SECONDS = 5.0


class EntryCamera(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def liveness(self) -> Liveness: ...

    def watch(self, callback: Callable[[Liveness], None]) -> None:
        """Call `callback` with every liveness report (about once a second)."""
        ...

    def arm(self, entry_id: str) -> None: ...

    def disarm(self, entry_id: str, done: Callable[[Clip], None]) -> None:
        """Close the entry's recording after the post-roll; `done` gets the clip."""
        ...


class RecorderCamera:
    """An `EntryCamera` on any URL ffmpeg reads (RTSP, HTTP, UDP, a file)."""

    def __init__(self, url: str, spool: Path, options: RecorderOptions | None = None) -> None:
        self._watchers: list[Callable[[Liveness], None]] = []
        self._recorder = Recorder(url, spool, options, on_liveness=self._report)

    def start(self) -> None:
        self._recorder.start()

    def stop(self) -> None:
        self._recorder.stop()

    def liveness(self) -> Liveness:
        return self._recorder.liveness()

    def buffered_seconds(self) -> float:
        """How far back the recording reaches now (the pre-roll an entry would get)."""
        return float(self._recorder.buffered_seconds())

    def watch(self, callback: Callable[[Liveness], None]) -> None:
        self._watchers.append(callback)

    def arm(self, entry_id: str) -> None:
        self._recorder.arm(entry_id)

    def disarm(self, entry_id: str, done: Callable[[Clip], None]) -> None:
        future = self._recorder.disarm(entry_id, post_roll=POST_ROLL_SECONDS)

        def finished(result: Future[Clip]) -> None:
            try:
                done(result.result())
            except Exception:  # the process edge: a clip that failed is logged, not fatal
                log.exception("clip of entry %s could not be assembled", entry_id)

        future.add_done_callback(finished)

    def _report(self, liveness: Liveness) -> None:
        for watcher in list(self._watchers):
            watcher(liveness)
