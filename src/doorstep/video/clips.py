"""One entry's clip, assembled from spool segments without re-encoding.

`assemble` joins the window's segments with ffmpeg's concat demuxer and stream copy
into an MP4 whose index (moov) is written before the media (`-movflags +faststart`), so
a browser can start playing it before it has all of it. The first segment begins at the
last keyframe at or before the window's start (stream copy can only cut there: the
pre-roll is at least `pre_roll`, at most one GOP more); the end is cut at the window's
`stop_at` exactly (`-t`). Durations of closed segments are given to the demuxer
(`duration` lines), so the joined timeline matches the segment list.

Then a JPEG thumbnail is taken at a moment of the caller's choosing (seeking in the MP4
decodes at most one GOP), and the clip's duration is read back with ffprobe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from doorstep.video import process
from doorstep.video.errors import RecorderError
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
    duration: float


def assemble(
    segments: Sequence[Segment],
    *,
    stop_at: float,
    directory: Path,
    thumbnail_at: float,
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
) -> Assembled:
    """Join `segments` (time order) up to `stop_at` into `directory`/clip.mp4, with a
    thumbnail `thumbnail_at` seconds in (clamped into the clip) as thumbnail.jpg."""
    if not segments:
        raise RecorderError("no video was recorded in this window")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    listing = directory / "segments.ffconcat"
    listing.write_text(_ffconcat(segments))
    video = directory / "clip.mp4"
    length = sum(s.duration for s in segments[:-1]) + (stop_at - segments[-1].start)
    process.run(_concat_argv(ffmpeg, listing, video, length), timeout=ASSEMBLE_TIMEOUT)
    listing.unlink()
    duration = process.probe_duration(video, ffprobe=ffprobe)
    thumbnail = directory / "thumbnail.jpg"
    at = min(max(0.0, thumbnail_at), max(0.0, duration - 0.1))
    process.run(_thumbnail_argv(ffmpeg, video, thumbnail, at), timeout=ASSEMBLE_TIMEOUT)
    return Assembled(video, thumbnail, duration)


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
