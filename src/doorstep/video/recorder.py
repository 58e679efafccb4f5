"""The hub's recorder for one camera, in the manner of Frigate: ffmpeg segments the
camera's stream by stream copy (no re-encoding) into a private spool, and each entry's
clip is cut from the spool.

One long-running ffmpeg per camera (restarted after `restart_delay` if it exits) reads
the camera URL once and writes two outputs:
1. Segments: `-c copy -f segment` into `<spool>/segments/`, MPEG-TS, one per GOP (cut
   at every keyframe: `-segment_time` is far below any GOP), listed in a CSV as they
   close (see `segments`). A GOP per segment bounds the extra pre-roll and the wait for
   the last segment by one GOP. (Cutting on wall-clock seconds instead,
   `-segment_atclocktime`, makes a keyframe that arrives a few ms before a second's
   boundary, rather than after it, double a segment.) MPEG-TS needs no trailer, so a
   segment cut short by a crash is still readable.
2. Liveness: keyframes only, decoded and shrunk to 64x36 gray on stdout, plus the
   `-progress` frame counter on stderr (see `liveness`).

Privacy: nothing is kept outside recording windows. Segments that overlap no window are
deleted as soon as they are older than `pre_roll` seconds (those a window held, as its
clip is handed over), so between entries the spool only ever holds a rolling pre-roll
of `pre_roll` seconds plus the segment being written (about one GOP). `start` deletes
whatever an earlier run left in the spool, except what an entry still needs (below).
With `continuous=True` (the resident's choice) segments outside windows are moved to
`<spool>/continuous/` instead, for the caller to keep and expire.

Entries: `arm(entry_id)` (at authorization) opens a window from `pre_roll` seconds before
now; `disarm(entry_id, post_roll=...)` (at the verified relock) closes it `post_roll`
seconds later and returns a Future. Once a closed segment reaches the window's end, or,
with the camera live, `EARLY_CUT_MARGIN` after it when the segment still being written
already holds the window's last frame (no wait for the next keyframe), or
`close_timeout` seconds after it if the camera is gone, the clip is assembled
(`clips.assemble`) under `<spool>/clips/<clip_id>/` and the Future resolves to a `Clip`.
The caller then archives it (`vault.ClipVault.archive`, which encrypts it and removes
the plaintext). Several entries may be armed at once; each gets its own clip.

Restarts: an entry's video outlives the process recording it. The windows are written to
`<spool>/windows.json` whenever one opens, closes or is handed over. `stop` leaves an
armed window open (its Future fails with `WindowKept`) and keeps its segments; a process
that dies keeps everything. The next `start` restores those windows with the segments
they hold, found in the earlier runs' segment lists (the segment a killed ffmpeg never
closed included), and deletes the rest. A restored window goes on recording from the
new run and is cut into one clip, with the time nobody recorded as a gap; `restored`
hands the new Futures to the caller, who also decides which restored windows to close.

Clocks: ffmpeg stamps packets with the system's wall clock, so arm/disarm times are Unix
times from the same clock (`time.time`, or `at=` a moment recorded elsewhere on this
machine).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from doorstep.video import process
from doorstep.video.clips import Clip, assemble
from doorstep.video.errors import RecorderError, VideoError
from doorstep.video.liveness import (
    THUMB_BYTES,
    THUMB_HEIGHT,
    THUMB_WIDTH,
    Liveness,
    LivenessMonitor,
)
from doorstep.video.segments import (
    Segment,
    SegmentList,
    Window,
    expired,
    for_window,
    gaps,
    needed,
    valid_entry_id,
)

log = logging.getLogger(__name__)

TICK = 0.1  # seconds between maintenance passes
# A live camera's frames reach the open segment's file as they arrive (flush_packets=1),
# so this long past a window's end the file already holds the window's last frame (at
# 15 fps one comes every 67 ms): the clip is cut from it rather than waiting up to a GOP
# for ffmpeg to close the segment at the next keyframe.
EARLY_CUT_MARGIN = 0.15
# How far short of the window's end the open segment's last frame may start (about a
# frame at 15 fps) and still count as reaching it.
FRAME_TOLERANCE = 0.1
STOP_TIMEOUT = 1.0  # two SIGTERMs half of it apart, then SIGKILL (see process.stop)
WINDOWS_FILE = "windows.json"
RUN_FILE = re.compile(r"r(\d{4,})(?:\.csv|-\d+\.ts)")


class WindowKept(RecorderError):
    """The recorder stopped while the entry was armed: its window and video are kept for
    the next `start`, whose `restored` Future brings the clip."""


@dataclass(frozen=True)
class RecorderOptions:
    pre_roll: float = 3.0  # seconds kept before `arm` (plus up to one GOP)
    continuous: bool = False  # keep everything (moved to <spool>/continuous/)
    close_timeout: float = 3.0  # past a window's end, assemble with what there is
    stalled_after: float = 2.0
    frozen_after: float = 3.0
    heartbeat: float = 1.0  # seconds between `on_liveness` calls when nothing changes
    restart_delay: float = 1.0
    input_args: tuple[str, ...] = ()  # before -i: e.g. ("-rtsp_transport", "tcp"), ("-re",)
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"


class Recorder:
    """Records one camera URL into a spool; cuts a clip per armed entry."""

    def __init__(
        self,
        url: str,
        spool: Path,
        options: RecorderOptions | None = None,
        *,
        on_liveness: Callable[[Liveness], None] | None = None,
    ) -> None:
        self.url = url
        self.spool = Path(spool)
        self.options = options or RecorderOptions()
        self._on_liveness = on_liveness
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._monitor = LivenessMonitor(
            stalled_after=self.options.stalled_after, frozen_after=self.options.frozen_after
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._run = 0
        self._listing: SegmentList | None = None
        self._listed: set[str] = set()  # names the current run has closed
        self._last_end: float | None = None  # end of the current run's last closed segment
        self._exited_at: float | None = None
        self._segments: dict[Path, Segment] = {}
        self._windows: dict[str, Window] = {}
        self._futures: dict[str, Future[Clip]] = {}
        self._restored: set[str] = set()  # windows `start` brought back from an earlier run
        self._assembling: set[str] = set()
        self._assembler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-assembly")
        self._maintainer: threading.Thread | None = None
        self._last_beat: tuple[float, Liveness | None] = (0.0, None)
        self.log: collections.deque[str] = collections.deque(maxlen=50)  # ffmpeg's stderr

    # ---- lifecycle ----------------------------------------------------------------

    @property
    def segments_dir(self) -> Path:
        return self.spool / "segments"

    @property
    def clips_dir(self) -> Path:
        return self.spool / "clips"

    @property
    def continuous_dir(self) -> Path:
        return self.spool / "continuous"

    @property
    def _camera(self) -> str:
        """The camera URL for logs: no user, password or query (credentials live there)."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))

    @property
    def pid(self) -> int | None:
        """The recording ffmpeg's pid (None while it is being restarted)."""
        running = self._process
        return running.pid if running is not None and running.poll() is None else None

    def start(self) -> None:
        """Restore the windows an earlier run left open (`restored`), clear the spool of
        every other leftover, and start recording."""
        if self._maintainer is not None:
            raise RecorderError("recorder already started")
        shutil.rmtree(self.clips_dir, ignore_errors=True)
        self._restore()
        for directory in (self.spool, self.segments_dir, self.clips_dir, self.continuous_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._launch()
        self._maintainer = threading.Thread(
            target=self._maintain, name="recorder-maintainer", daemon=True
        )
        self._maintainer.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop recording. Every disarmed window not yet assembled is assembled now from
        what was recorded, so its Future resolves. An armed window stays open for the next
        `start`, with the segments it holds (its Future fails with `WindowKept`); every
        other segment is deleted. Safe to call twice."""
        self._halt.set()
        if self._maintainer is not None:
            self._maintainer.join(timeout)
        process.stop(self._process, timeout=STOP_TIMEOUT)
        self._join_readers()
        with self._lock:
            self._read_list()
            if (leftover := self._open_segment()) is not None:  # ffmpeg had to be killed
                self._segments[leftover.path] = leftover
            due = self._take(lambda window: window.stop_at is not None)
        for window in due:
            self._assembler.submit(self._finish, window, final=True)
        self._assembler.shutdown(wait=True)
        with self._lock:
            kept = list(self._windows.values())
            for segment in list(self._segments.values()):
                if not needed(segment, kept):
                    self._release(segment)
            futures = [self._futures.pop(window.entry_id) for window in kept]
            self._save_windows()
        if not kept:
            shutil.rmtree(self.segments_dir, ignore_errors=True)
        for future in futures:
            if not future.done():
                future.set_exception(WindowKept("recorder stopped; the window is kept"))

    def salvage(self, deliver: Callable[[Clip], None] | None = None) -> dict[str, Future[Clip]]:
        """For a spool whose camera is gone for good (taken off its door, perhaps in the
        middle of an entry), instead of `start`: each window an earlier run left (open,
        or closed and not yet assembled) is closed where its video ends and cut into a
        clip from what was recorded (one left open is incomplete: its entry went on
        unfilmed), handed to `deliver` while the spool still holds the window (a process
        that dies before `deliver` has kept the clip salvages it again); then everything
        else in the spool is deleted. By entry id, the Futures of those clips, all
        resolved (a window that holds no video resolves to an error). No camera is read."""
        if self._maintainer is not None:
            raise RecorderError("recorder already started")
        shutil.rmtree(self.clips_dir, ignore_errors=True)
        self._restore()
        cut_short = set()
        with self._lock:
            for window in self._windows.values():
                if window.stop_at is None:  # the entry went on after the recording ended
                    cut_short.add(window.entry_id)
                    held = for_window(self._segments.values(), window)
                    window.disarmed_at = max(window.armed_at, held[-1].end if held else 0.0)
                    window.stop_at = window.disarmed_at
            due = self._take(lambda _window: True)
            futures: dict[str, Future[Clip]] = {}
            for entry_id, cut in self._futures.items():
                salvaged: Future[Clip] = Future()
                futures[entry_id] = salvaged
                cut.add_done_callback(
                    functools.partial(_salvaged, into=salvaged, short=entry_id in cut_short)
                )
                if deliver is not None:
                    salvaged.add_done_callback(functools.partial(_deliver, deliver))
        for window in due:
            self._assembler.submit(self._finish, window, final=True)
        self._assembler.shutdown(wait=True)
        shutil.rmtree(self.segments_dir, ignore_errors=True)
        (self.spool / WINDOWS_FILE).unlink(missing_ok=True)
        return futures

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- entries ------------------------------------------------------------------

    def arm(self, entry_id: str, *, at: float | None = None) -> Future[Clip]:
        """Open `entry_id`'s window now (or `at`). The clip will start at least
        `pre_roll` seconds before that, if the spool already reaches that far back.
        The Future resolves to the clip after `disarm`."""
        if not valid_entry_id(entry_id):
            raise RecorderError(f"invalid entry id {entry_id!r}")
        armed_at = time.time() if at is None else at
        future: Future[Clip] = Future()
        with self._lock:
            if self._halt.is_set() or self._maintainer is None:
                raise RecorderError("recorder not running")
            if entry_id in self._windows:
                raise RecorderError(f"entry {entry_id} is already armed")
            self._windows[entry_id] = Window(entry_id, armed_at, self.options.pre_roll)
            self._futures[entry_id] = future
            self._save_windows()
        return future

    def disarm(
        self, entry_id: str, *, post_roll: float = 5.0, at: float | None = None
    ) -> Future[Clip]:
        """Close `entry_id`'s window `post_roll` seconds after now (or `at`); returns
        the Future `arm` gave. It resolves to the clip once the video up to that moment
        is in the spool (or `close_timeout` later if the camera is gone: the clip is
        then incomplete)."""
        disarmed_at = time.time() if at is None else at
        with self._lock:
            window = self._windows.get(entry_id)
            if window is None or window.stop_at is not None:
                raise RecorderError(f"entry {entry_id} is not armed")
            window.disarmed_at = disarmed_at
            window.stop_at = disarmed_at + max(0.0, post_roll)
            self._save_windows()
            return self._futures[entry_id]

    def restored(self) -> dict[str, Future[Clip]]:
        """The windows `start` restored from an earlier run and not yet handed over, by
        entry id, with the Futures that will bring their clips. One still open is closed
        by `disarm` like any other."""
        with self._lock:
            return {entry_id: self._futures[entry_id] for entry_id in self._restored}

    # ---- observation --------------------------------------------------------------

    def liveness(self) -> Liveness:
        return self._monitor.status()

    def segments(self) -> list[Segment]:
        """The closed segments the spool holds now, oldest first."""
        with self._lock:
            return sorted(self._segments.values(), key=lambda s: s.start)

    def windows(self) -> list[Window]:
        """Copies of the windows held now (armed, or disarmed and not yet assembled)."""
        with self._lock:
            return [Window(**vars(w)) for w in self._windows.values()]

    def buffered_seconds(self, now: float | None = None) -> float:
        """How far back the spool reaches now: the pre-roll an entry armed now would get."""
        held = self.segments()
        return 0.0 if not held else (time.time() if now is None else now) - held[0].start

    # ---- across restarts ----------------------------------------------------------

    def _save_windows(self) -> None:
        """Write the windows held now to `windows.json` (under the lock). Replaced whole,
        so a crash leaves the old file or the new one. Not fsynced: the segments it
        points at are not either; what it guards against is a process that dies."""
        path = self.spool / WINDOWS_FILE
        if not self._windows:
            path.unlink(missing_ok=True)
            return
        written = path.with_suffix(".tmp")
        written.write_text(json.dumps([vars(window) for window in self._windows.values()]))
        os.replace(written, path)

    def _saved_windows(self) -> list[Window]:
        path = self.spool / WINDOWS_FILE
        try:
            saved = json.loads(path.read_text())
            windows = [Window(**fields) for fields in saved]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError) as error:  # not ours, or cut short: nothing to keep
            log.error("ignoring the recorder's unreadable %s: %s", path, error)
            return []
        return [window for window in windows if valid_entry_id(window.entry_id)]

    def _restore(self) -> None:
        """Take back the windows an earlier run left open and the segments they hold;
        delete every other segment (no window needs it, and its pre-roll is long gone).
        Each earlier run's list is rewritten to name only what is kept, with true spans,
        so a process that dies again before those windows close loses nothing either."""
        windows = self._saved_windows()
        runs = self._earlier_runs()
        self._run = max(runs, default=0)
        if not windows:
            shutil.rmtree(self.segments_dir, ignore_errors=True)
            (self.spool / WINDOWS_FILE).unlink(missing_ok=True)
            return
        for run in runs:
            name = f"r{run:04d}"
            kept = []
            for segment in self._earlier_segments(name):
                if needed(segment, windows):
                    kept.append(segment)
                    self._segments[segment.path] = segment
                else:
                    segment.path.unlink(missing_ok=True)
            listing = self.segments_dir / f"{name}.csv"
            if kept:
                rewritten = listing.with_suffix(".tmp")
                rewritten.write_text(
                    "".join(f"{s.path.name},{s.start:.6f},{s.end:.6f}\n" for s in kept)
                )
                os.replace(rewritten, listing)
            else:
                listing.unlink(missing_ok=True)
        with self._lock:
            self._windows = {window.entry_id: window for window in windows}
            self._futures = {window.entry_id: Future() for window in windows}
            self._restored = set(self._windows)
        log.info("restored %d recording window(s) from before the restart", len(windows))

    def _earlier_runs(self) -> list[int]:
        """The runs whose files an earlier process left (a list, segments, or both)."""
        if not self.segments_dir.is_dir():
            return []
        names = (RUN_FILE.fullmatch(path.name) for path in self.segments_dir.iterdir())
        return sorted({int(match.group(1)) for match in names if match})

    def _earlier_segments(self, run: str) -> list[Segment]:
        """An earlier run's segments still on disk: those its list names, then any file
        after them that it never closed (ffmpeg killed), spanning from the last listed
        end (or, with nothing listed, back from the file's last write)."""
        listed = SegmentList(self.segments_dir / f"{run}.csv").read_new()
        names = {segment.path.name for segment in listed}
        last_end = listed[-1].end if listed else None
        held = []
        for segment in listed:
            if not segment.path.exists():
                continue  # released before the restart
            if segment.start <= 0:
                segment = segment.with_start(segment.end - self._file_duration(segment.path))
            held.append(segment)
        for path in sorted(self.segments_dir.glob(f"{run}-*.ts")):
            if path.name in names:
                continue
            length = self._file_duration(path)
            start = last_end if last_end is not None else path.stat().st_mtime - length
            held.append(Segment(path, start, start + length))
            last_end = start + length
        # The run's last file may be cut short as ffmpeg stopped (a frame or two, no
        # stream header): one the demuxer cannot read would end the joined clip there.
        if held and self._file_duration(held[-1].path) <= 0:
            held.pop().path.unlink(missing_ok=True)
        return held

    # ---- ffmpeg -------------------------------------------------------------------

    def _launch(self) -> None:
        """Start a new ffmpeg run, with its own segment names and list."""
        with self._lock:
            self._run += 1
            name = f"r{self._run:04d}"
            self._listing = SegmentList(self.segments_dir / f"{name}.csv")
            self._listed, self._last_end, self._exited_at = set(), None, None
        self._monitor.restarted()
        recording = process.spawn(self._argv(name), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert recording.stdout is not None and recording.stderr is not None
        self._process = recording
        self._readers = [
            _reader(self._read_keyframes, recording.stdout, "recorder-keyframes"),
            _reader(self._read_progress, recording.stderr, "recorder-progress"),
        ]

    def _argv(self, name: str) -> list[str]:
        options = self.options
        return [
            *(options.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"),
            *("-progress", "pipe:2", "-stats_period", "0.25"),
            *("-use_wallclock_as_timestamps", "1", "-copyts"),
            *("-analyzeduration", "1000000", "-probesize", "1000000"),
            *("-skip_frame", "nokey", "-threads", "1"),  # decoder: keyframes, one thread
            *options.input_args,
            *("-i", self.url),
            *("-map", "0:v:0", "-c", "copy", "-f", "segment", "-segment_format", "mpegts"),
            # Each frame reaches the open segment's file at once: if the camera drops out,
            # its last frames are on disk for the clip, not in a muxer buffer.
            *("-segment_format_options", "flush_packets=1"),
            *("-segment_time", "0.05"),  # below any GOP: a segment per keyframe
            *("-reset_timestamps", "1", "-segment_list_type", "csv"),
            *("-segment_list", str(self.segments_dir / f"{name}.csv")),
            str(self.segments_dir / f"{name}-%08d.ts"),
            *("-map", "0:v:0", "-vf", f"scale={THUMB_WIDTH}:{THUMB_HEIGHT}:flags=area,format=gray"),
            *("-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"),
        ]

    def _read_keyframes(self, stdout: IO[bytes]) -> None:
        while len(thumbnail := stdout.read(THUMB_BYTES)) == THUMB_BYTES:
            self._monitor.on_keyframe(thumbnail)

    def _read_progress(self, stderr: IO[bytes]) -> None:
        for raw in stderr:
            line = raw.decode("utf-8", "replace").strip()
            key, equals, value = line.partition("=")
            if key == "frame" and value.isdigit():
                self._monitor.on_progress(int(value))
            elif line and not (equals and key.replace("_", "").isalnum()):  # not progress
                # Joining a stream mid-GOP alone logs dozens of decoder errors: keep them
                # for diagnosis, and warn only when ffmpeg exits (`_supervise`).
                self.log.append(line)
                log.debug("ffmpeg (%s): %s", self._camera, line)

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)
        self._readers = []

    def _supervise(self, now: float) -> None:
        """Restart ffmpeg `restart_delay` seconds after it exits."""
        running = self._process
        if running is None or running.poll() is None:
            return
        if self._exited_at is None:
            self._exited_at = now
            last_words = " | ".join(list(self.log)[-3:])
            log.warning(
                "ffmpeg (%s) exited with %s: %s", self._camera, running.returncode, last_words
            )
            with self._lock:
                self._read_list()  # its last segment, closed on the way out
                # Killed, it could not close its last segment: adopt it, so the windows
                # and the pre-roll rule decide its fate like any other.
                if (leftover := self._open_segment()) is not None:
                    self._segments[leftover.path] = leftover
            return
        if now - self._exited_at >= self.options.restart_delay:
            process.stop(running, timeout=STOP_TIMEOUT)
            self._join_readers()
            self._launch()

    # ---- maintenance --------------------------------------------------------------

    def _maintain(self) -> None:
        while not self._halt.wait(TICK):
            try:
                self._tick()
            except Exception:  # the recorder's process edge: log and carry on
                log.exception("recorder maintenance failed")

    def _tick(self) -> None:
        now = time.time()
        self._supervise(time.monotonic())
        with self._lock:
            self._read_list()
            due = self._take(lambda window: self._due(window, now))
            self._prune(now)
        for window in due:
            self._assembler.submit(self._finish, window)
        self._beat()

    def _take(self, due: Callable[[Window], bool]) -> list[Window]:
        """Windows to assemble now, marked as being assembled (under the lock)."""
        taken = [
            window
            for window in self._windows.values()
            if window.entry_id not in self._assembling and due(window)
        ]
        self._assembling.update(window.entry_id for window in taken)
        return taken

    def _read_list(self) -> None:
        """Take in the segments ffmpeg has closed since the last pass (under the lock)."""
        if self._listing is None:
            return
        for segment in self._listing.read_new():
            if segment.start <= 0:  # ffmpeg lists 0 as the start of each run's first segment
                segment = segment.with_start(segment.end - self._file_duration(segment.path))
            self._listed.add(segment.path.name)
            self._last_end = segment.end
            self._segments[segment.path] = segment

    def _file_duration(self, path: Path) -> float:
        try:
            return process.probe_duration(path, ffprobe=self.options.ffprobe)
        except VideoError:
            return 0.0

    def _due(self, window: Window, now: float) -> bool:
        if window.stop_at is None:
            return False
        return (
            window.covered_by(self._segments.values())
            or (now >= window.stop_at + EARLY_CUT_MARGIN and self._monitor.status().live)
            or now >= window.stop_at + self.options.close_timeout
        )

    def _prune(self, now: float) -> None:
        """Delete (continuous: move away) the segments that no window needs and that
        are too old to be a pre-roll (under the lock)."""
        windows = list(self._windows.values())
        for segment in list(self._segments.values()):
            if needed(segment, windows) or not expired(
                segment, now=now, pre_roll=self.options.pre_roll
            ):
                continue
            self._release(segment)

    def _release(self, segment: Segment) -> None:
        """Delete a segment no window holds, or keep it aside when recording is
        continuous (under the lock)."""
        self._segments.pop(segment.path, None)
        if self.options.continuous:
            with contextlib.suppress(FileNotFoundError):
                segment.path.replace(self.continuous_dir / segment.path.name)
        else:
            segment.path.unlink(missing_ok=True)

    def _beat(self) -> None:
        """Call `on_liveness` when the state changes, and every `heartbeat` seconds."""
        if self._on_liveness is None:
            return
        status, now = self._monitor.status(), time.monotonic()
        sent_at, sent = self._last_beat
        if (
            sent is None
            or sent.state is not status.state
            or now - sent_at >= self.options.heartbeat
        ):
            self._last_beat = (now, status)
            try:
                self._on_liveness(status)
            except Exception:  # a subscriber's failure must not stop the recorder
                log.exception("on_liveness callback failed")

    # ---- clips --------------------------------------------------------------------

    def _finish(self, window: Window, *, final: bool = False) -> None:
        """Assemble `window`'s clip, resolve its Future, release its segments (`final`:
        the recorder is stopping; cut it from what there is)."""
        with self._lock:
            future = self._futures[window.entry_id]
        try:
            clip = self._cut(window, final=final)
        except Exception as exc:  # handed to whoever waits on the Future
            clip = None
            future.set_exception(exc)
        with self._lock:
            if clip is None and not future.done():  # too early: the next pass tries again
                self._assembling.discard(window.entry_id)
                return
        if clip is not None:
            # Handed over (the uploader queues it durably) while `windows.json` still
            # holds the window: a process that dies in between cuts the clip again at
            # the next start (a second clip of the entry), never loses it.
            future.set_result(clip)
        with self._lock:
            self._windows.pop(window.entry_id, None)
            self._futures.pop(window.entry_id, None)
            self._restored.discard(window.entry_id)
            self._assembling.discard(window.entry_id)
            self._save_windows()
            # What the window held and no other window or the pre-roll needs goes now,
            # before the clip is handed over, not at the next maintenance pass.
            self._prune(time.time())

    def _cut(self, window: Window, *, final: bool = False) -> Clip | None:
        """The window's clip, or None when it is too early to cut it (the frames have not
        reached the window's end yet, and `close_timeout` has not passed)."""
        assert window.stop_at is not None and window.disarmed_at is not None
        with self._lock:
            self._read_list()  # a segment closed since the last pass counts
            covered = window.covered_by(self._segments.values())
            chosen = for_window(self._segments.values(), window)
            live = not final and self._monitor.status().live
            open_segment = None if covered else self._open_segment(live=live)
            if open_segment is not None:
                chosen = for_window([*chosen, open_segment], window)
                # The segment being written already holds the window's last frame.
                covered = open_segment.end >= window.stop_at - FRAME_TOLERANCE
            too_early = time.time() < window.stop_at + self.options.close_timeout
            if not covered and too_early and not final:
                return None
        clip_id = uuid.uuid4().hex
        middle = (window.armed_at + window.disarmed_at) / 2
        start = chosen[0].start if chosen else window.start_at
        assembled = assemble(
            chosen,
            stop_at=window.stop_at,
            directory=self.clips_dir / clip_id,
            thumbnail_at=middle - start,
            ffmpeg=self.options.ffmpeg,
        )
        holes = tuple(gaps(chosen))
        return Clip(
            clip_id=clip_id,
            entry_id=window.entry_id,
            video=assembled.video,
            thumbnail=assembled.thumbnail,
            started_at=start,
            ended_at=min(window.stop_at, chosen[-1].end),
            duration=assembled.duration,
            armed_at=window.armed_at,
            disarmed_at=window.disarmed_at,
            stop_at=window.stop_at,
            gaps=holes,
            complete=covered
            and not holes
            and start <= window.start_at
            # Cut from a segment still being written, the video must really reach the
            # window's end (a camera that stalled in the last moments does not).
            and (open_segment is None or assembled.duration >= assembled.length - FRAME_TOLERANCE),
        )

    def _open_segment(self, *, live: bool = False) -> Segment | None:
        """The segment ffmpeg is still writing (under the lock): after a camera loss it
        holds the last frames received, and its span is read from the file itself. With
        the camera `live`, frames reach the file as they arrive (flush_packets=1), so it
        spans from the last closed segment's end to now, with no ffprobe to wait for."""
        if self._listing is None:
            return None
        run = self._listing.path.stem
        unlisted = sorted(
            path
            for path in self.segments_dir.glob(f"{run}-*.ts")
            if path.name not in self._listed and path not in self._segments
        )
        if len(unlisted) != 1:
            # None, or a segment closed after the list was read and the next one already
            # begun: which file starts where is not known until the list says so.
            return None
        path = unlisted[0]
        if live and self._last_end is not None:
            return Segment(path, self._last_end, time.time())
        length = self._file_duration(path)
        start = self._last_end if self._last_end is not None else time.time() - length
        return Segment(path, start, start + length)


def _reader(target: Callable[[IO[bytes]], None], stream: IO[bytes], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=(stream,), name=name, daemon=True)
    thread.start()
    return thread


def _salvaged(cut: Future[Clip], *, into: Future[Clip], short: bool) -> None:
    """Pass a salvaged window's outcome on; a window its entry outlived is incomplete."""
    error = cut.exception()
    if error is not None:
        into.set_exception(error)
    else:
        clip = cut.result()
        into.set_result(replace(clip, complete=False) if short else clip)


def _deliver(deliver: Callable[[Clip], None], salvaged: Future[Clip]) -> None:
    if salvaged.exception() is None:
        deliver(salvaged.result())
