"""The hub's camera for one door: recording armed by entries, and its liveness.

Camera first (DESIGN principle 3): a door with a camera opens only while the camera is
live (new frames, a changing picture); recording is armed before the bolt moves, so every
clip starts before the unlock (the recorder keeps a short pre-roll); it is disarmed after
the verified relock plus a post-roll. A camera that stalls or freezes during an entry is
reported at once (`camera_lost`). The recording itself is `doorstep.video.Recorder`
(ffmpeg, stream copy). Each clip goes to the hub's `uploader.Uploader` (a durable queue
that sends it to the service) and to the clip watchers (the agent reports it), and live
view takes the recorder's newest segments (`liveview.LiveStreamer`) while someone watches.

An entry's recording outlives a restart of the hub: the recorder keeps an armed window
and its video across `stop` and a crash, and `start` restores it (`restored`). Arming a
restored entry again goes on with that window, so the entry gets one clip from before
the unlock to after the relock, with the restart as a gap in it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from doorstep.video.clips import Clip
from doorstep.video.liveness import Liveness
from doorstep.video.recorder import Recorder, RecorderOptions, WindowKept
from doorstep.video.segments import Segment

if TYPE_CHECKING:
    from doorstep.hub.liveview import LiveStreamer
    from doorstep.hub.uploader import Uploader

__all__ = ["EntryCamera", "RecorderCamera", "RecorderOptions", "salvage_spool"]

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

    def watch_clips(self, callback: Callable[[Clip], None]) -> None:
        """Call `callback` with every entry's clip once it is assembled."""
        ...

    def restored(self) -> list[str]:
        """Entries whose recording an earlier run left open, still open now (after
        `start`): each goes on until `disarm`."""
        ...

    def arm(self, entry_id: str) -> None:
        """Open the entry's recording (a restored one goes on); `VideoError` when it
        cannot (not running, already armed)."""
        ...

    def disarm(self, entry_id: str) -> None:
        """Close the entry's recording after the post-roll; its clip then goes to the
        clip watchers. `VideoError` for an entry that is not armed."""
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
        self._clip_watchers: list[Callable[[Clip], None]] = []
        self._recorder = Recorder(url, spool, options, on_liveness=self._report)
        self._access_point = access_point
        self._uploader = uploader
        self._live = live

    def start(self) -> None:
        for worker in (self._uploader, self._live):
            if worker is not None:
                worker.retain()
        self._recorder.start()
        for entry_id, future in self._recorder.restored().items():
            self._deliver(entry_id, future)

    def stop(self) -> None:
        if self._live is not None:
            self._live.release()
        # Assembles what was disarmed, queued before the uploader stops; what is still
        # armed is kept for the next start.
        self._recorder.stop()
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

    def watch_clips(self, callback: Callable[[Clip], None]) -> None:
        self._clip_watchers.append(callback)

    def restored(self) -> list[str]:
        return [
            window.entry_id
            for window in self._recorder.windows()
            if window.entry_id in self._recorder.restored() and window.stop_at is None
        ]

    def arm(self, entry_id: str) -> None:
        if entry_id in self._recorder.restored():
            return  # the earlier run's window goes on: one clip for the whole entry
        self._deliver(entry_id, self._recorder.arm(entry_id))

    def disarm(self, entry_id: str) -> None:
        self._recorder.disarm(entry_id, post_roll=POST_ROLL_SECONDS)

    def _deliver(self, entry_id: str, future: Future[Clip]) -> None:
        """Once assembled, the clip goes to the clip watchers, then to the uploader
        (which takes its files over)."""

        def finished(result: Future[Clip]) -> None:
            try:
                clip = result.result()
            except WindowKept:
                log.info("entry %s is still recording: its window is kept", entry_id)
                return
            except Exception:  # the process edge: a clip that failed is logged, not fatal
                log.exception("clip of entry %s could not be assembled", entry_id)
                return
            for watcher in list(self._clip_watchers):
                try:
                    watcher(clip)
                except Exception:  # a watcher's failure must not stop the upload
                    log.exception("clip watcher failed for entry %s", entry_id)
            if self._uploader is not None:
                try:
                    self._uploader.enqueue(clip, access_point=self._access_point)
                except Exception:  # the process edge: logged, not fatal
                    log.exception("clip of entry %s could not be queued", entry_id)

        future.add_done_callback(finished)

    def _report(self, liveness: Liveness) -> None:
        for watcher in list(self._watchers):
            watcher(liveness)


def salvage_spool(spool: Path, *, access_point: str, uploader: Uploader) -> list[str]:
    """The spool of a door that no longer has a camera (taken off it in the hub's lock
    configuration, perhaps in the middle of an entry): the video of each entry it still
    holds is cut into a clip (`Recorder.salvage`: to where the recording stopped, marked
    incomplete) and queued for upload, and the spool is deleted, so no video of the home
    is left behind unencrypted and unsent. Each clip is queued before the spool lets go
    of its window: a hub that dies meanwhile salvages it again at its next start. The
    entries whose clips were queued."""
    queued = []

    def queue(clip: Clip) -> None:
        uploader.enqueue(clip, access_point=access_point)
        queued.append(clip.entry_id)
        log.warning(
            "the camera of %s was removed during entry %s: the video recorded until then"
            " is queued for upload",
            access_point,
            clip.entry_id,
        )

    for entry_id, future in Recorder("", spool).salvage(deliver=queue).items():
        if (error := future.exception()) is not None:  # no video in its window: nothing
            log.warning("entry %s on %s left no clip to salvage: %s", entry_id, access_point, error)
    shutil.rmtree(spool, ignore_errors=True)
    return queued
