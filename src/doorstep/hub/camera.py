"""The hub's camera for one door: recording armed by entries, and its liveness.

Camera first (DESIGN principle 3): a door with a camera opens only while the camera is
live (new frames, a changing picture); recording is armed before the bolt moves, so every
clip starts before the unlock (the recorder keeps a short pre-roll); it is disarmed after
the verified relock plus a post-roll. A camera that stalls or freezes during an entry is
reported at once (`camera_lost`). The recording itself is `doorstep.video.Recorder`
(ffmpeg, stream copy). Each clip goes to the hub's `uploader.Uploader` (a durable queue
that sends it to the service), and live view takes the recorder's newest segments
(`liveview.LiveStreamer`) while someone watches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from doorstep.video.clips import Clip
from doorstep.video.liveness import Liveness
from doorstep.video.recorder import Recorder, RecorderOptions
from doorstep.video.segments import Segment

if TYPE_CHECKING:
    from doorstep.hub.liveview import LiveStreamer
    from doorstep.hub.uploader import Uploader

__all__ = ["EntryCamera", "RecorderCamera", "RecorderOptions"]

log = logging.getLogger(__name__)

# Recorded after the verified relock: the bolt thrown with the door shut, on video. One
# second shows it; more would film an empty home for nothing (private by default), and
# every second of it delays the clip the resident is waiting for.
POST_ROLL_SECONDS = 1.0


class EntryCamera(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def liveness(self) -> Liveness: ...

    def watch(self, callback: Callable[[Liveness], None]) -> None:
        """Call `callback` with every liveness report (about once a second)."""
        ...

    def arm(self, entry_id: str) -> None:
        """Open the entry's recording; `VideoError` when it cannot (not running, armed)."""
        ...

    def disarm(self, entry_id: str, done: Callable[[Clip], None]) -> None:
        """Close the entry's recording after the post-roll; `done` gets the clip.
        `VideoError` for an entry that is not armed."""
        ...


class RecorderCamera:
    """An `EntryCamera` on any URL ffmpeg reads (RTSP, HTTP, UDP, a file)."""

    def __init__(
        self,
        url: str,
        spool: Path,
        options: RecorderOptions | None = None,
        *,
        access_point: str = "",
        uploader: Uploader | None = None,
        live: LiveStreamer | None = None,
    ) -> None:
        self._watchers: list[Callable[[Liveness], None]] = []
        self._recorder = Recorder(url, spool, options, on_liveness=self._report)
        self._access_point = access_point
        self._uploader = uploader
        self._live = live

    def start(self) -> None:
        self._recorder.start()
        for worker in (self._uploader, self._live):
            if worker is not None:
                worker.retain()

    def stop(self) -> None:
        if self._live is not None:
            self._live.release()
        self._recorder.stop()  # assembles what is still armed: queued before the uploader stops
        if self._uploader is not None:
            self._uploader.release()

    def segments(self) -> list[Segment]:
        """The recorder's closed segments, oldest first (live view sends the newest)."""
        return self._recorder.segments()

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
                clip = result.result()
                done(clip)
                if self._uploader is not None:
                    self._uploader.enqueue(clip, access_point=self._access_point)
            except Exception:  # the process edge: a clip that failed is logged, not fatal
                log.exception("clip of entry %s could not be assembled", entry_id)

        future.add_done_callback(finished)

    def _report(self, liveness: Liveness) -> None:
        for watcher in list(self._watchers):
            watcher(liveness)
