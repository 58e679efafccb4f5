"""One entry's clip, assembled from spool segments without re-encoding.

`assemble` joins the window's segments with ffmpeg's concat demuxer and stream copy
into an MP4 whose index (moov) is written before the media (`-movflags +faststart`), so
a browser can start playing it before it has all of it. The first segment begins at the
last keyframe at or before the window's start (stream copy can only cut there: the
pre-roll is at least `pre_roll`, at most one GOP more); the end is cut at the window's
`stop_at` exactly (`-t`). Durations of closed segments are given to the demuxer
(`duration` lines), so the joined timeline matches the segment list.

A JPEG thumbnail is taken near a moment of the caller's choosing, at the same time as
the join: the first frame (a keyframe) of the segment that holds that moment, so at most
one GOP before it and a single frame decoded; or from the joined MP4 at that moment when
it is in the last segment. The clip's duration is read back from the MP4's movie header (`mvhd`),
without starting ffprobe: every process started here delays the clip the resident is
waiting for.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doorstep.video import process
from doorstep.video.errors import RecorderError, VideoError
from doorstep.video.segments import Segment

ASSEMBLE_TIMEOUT = 60.0  # seconds, for one ffmpeg job
THUMBNAIL_WIDTH = 320


@dataclass(frozen=True)
class Clip:
    """A recorded entry: plaintext files in the recorder's private spool until archived.

    Times are Unix seconds. `started_at` is when the clip's first frame arrived,
    `ended_at` when its last one ends (`started_at + duration` unless the camera dropped
    out: `gaps` lists the holes, which the video skips over). `complete` is False when
    the clip does not reach `stop_at` or has gaps (a camera lost during the entry)."""

    clip_id: str
    entry_id: str
    video: Path
    thumbnail: Path
    started_at: float
    ended_at: float
    duration: float
    armed_at: float
    disarmed_at: float
    stop_at: float
    gaps: tuple[tuple[float, float], ...]
    complete: bool

    @property
    def pre_roll(self) -> float:
        """Seconds recorded before the entry was armed."""
        return self.armed_at - self.started_at

    @property
    def post_roll(self) -> float:
        """Seconds recorded after the entry was disarmed."""
        return self.ended_at - self.disarmed_at


@dataclass(frozen=True)
class Assembled:
    video: Path
    thumbnail: Path
    duration: float  # as the MP4 says
    length: float  # as asked: the segments' span up to `stop_at`


def assemble(
    segments: Sequence[Segment],
    *,
    stop_at: float,
    directory: Path,
    thumbnail_at: float,
    ffmpeg: str = "ffmpeg",
) -> Assembled:
    """Join `segments` (time order) up to `stop_at` into `directory`/clip.mp4, with a
    thumbnail `thumbnail_at` seconds in (clamped into the clip) as thumbnail.jpg."""
    if not segments:
        raise RecorderError("no video was recorded in this window")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    listing = directory / "segments.ffconcat"
    listing.write_text(_ffconcat(segments))
    video = directory / "clip.mp4"
    thumbnail = directory / "thumbnail.jpg"
    length = sum(s.duration for s in segments[:-1]) + (stop_at - segments[-1].start)
    at = min(max(0.0, thumbnail_at), max(0.0, length - 0.1))
    source = _thumbnail_source(segments, at)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-thumbnail") as pool:
        early = None
        if source is not None:
            path, offset = source
            early = pool.submit(
                process.run, _thumbnail_argv(ffmpeg, path, thumbnail, offset),
                timeout=ASSEMBLE_TIMEOUT,
            )  # fmt: skip
        process.run(_concat_argv(ffmpeg, listing, video, length), timeout=ASSEMBLE_TIMEOUT)
        if early is not None:
            early.result()
    listing.unlink()
    duration = mp4_duration(video)
    if source is None or not _nonempty(thumbnail):
        # (ffmpeg writes nothing, and succeeds, when the segment ends before the offset.)
        at = min(at, max(0.0, duration - 0.1))
        process.run(_thumbnail_argv(ffmpeg, video, thumbnail, at), timeout=ASSEMBLE_TIMEOUT)
    return Assembled(video, thumbnail, duration, length)


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _thumbnail_source(segments: Sequence[Segment], at: float) -> tuple[Path, float] | None:
    """The closed segment holding `at` seconds into the joined clip, and where in it to
    take the thumbnail (its first frame: seeking inside a spool segment by time is not
    reliable, its timestamps are the camera's); None when that is the last segment (it
    may still be growing: use the joined MP4)."""
    offset = 0.0
    for segment in segments[:-1]:
        if segment.duration > 0 and offset <= at < offset + segment.duration:
            return segment.path, 0.0
        offset += max(0.0, segment.duration)
    return None


def mp4_duration(path: Path) -> float:
    """The movie's duration in seconds from its `mvhd` box (ISO/IEC 14496-12, 8.2.2):
    the top-level boxes are walked to `moov`, whose header is its first child in what
    ffmpeg writes (looked for among all of them anyway)."""
    with path.open("rb") as file:
        end = path.stat().st_size
        moov = _find_box(file, b"moov", 0, end)
        if moov is None:
            raise VideoError(f"{path.name} has no moov box")
        mvhd = _find_box(file, b"mvhd", *moov)
        if mvhd is None:
            raise VideoError(f"{path.name} has no mvhd box")
        file.seek(mvhd[0])
        header = file.read(32)
    if len(header) < 20:
        raise VideoError(f"{path.name} has a truncated mvhd box")
    if header[0] == 1:  # version 1: 64-bit times and duration
        if len(header) < 32:
            raise VideoError(f"{path.name} has a truncated mvhd box")
        timescale, duration = struct.unpack(">IQ", header[20:32])
    else:
        timescale, duration = struct.unpack(">II", header[12:20])
    if timescale == 0:
        raise VideoError(f"{path.name} has a zero timescale")
    return float(duration) / float(timescale)


def _find_box(file: Any, kind: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(payload start, payload end) of the first box of type `kind` among the boxes
    laid end to end between `start` and `end`."""
    offset = start
    while offset + 8 <= end:
        file.seek(offset)
        header = file.read(16)
        if len(header) < 8:
            return None
        size, box = struct.unpack(">I4s", header[:8])
        payload = offset + 8
        if size == 1:  # a 64-bit size follows the type
            if len(header) < 16:
                return None
            (size,) = struct.unpack(">Q", header[8:16])
            payload = offset + 16
        elif size == 0:  # to the end of the enclosing space
            size = end - offset
        if size < payload - offset or offset + size > end:
            return None  # malformed: a box cannot be smaller than its header or overrun
        if box == kind:
            return payload, offset + size
        offset += size
    return None


def _ffconcat(segments: Sequence[Segment]) -> str:
    lines = ["ffconcat version 1.0"]
    for segment in segments:
        lines.append(f"file '{segment.path.resolve()}'")
        if segment.duration > 0:
            lines.append(f"duration {segment.duration:.6f}")
    return "\n".join(lines) + "\n"


def _concat_argv(ffmpeg: str, listing: Path, video: Path, length: float) -> list[str]:
    return [
        *(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
        *("-f", "concat", "-safe", "0", "-i", str(listing)),
        *("-map", "0:v:0", "-c", "copy", "-t", f"{max(0.0, length):.6f}"),
        *("-movflags", "+faststart", "-f", "mp4", str(video)),
    ]


def _thumbnail_argv(ffmpeg: str, video: Path, thumbnail: Path, at: float) -> list[str]:
    return [
        *(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
        *("-ss", f"{at:.3f}", "-i", str(video)),
        *("-frames:v", "1", "-vf", f"scale={THUMBNAIL_WIDTH}:-2", "-q:v", "5"),
        *("-f", "image2", str(thumbnail)),
    ]
