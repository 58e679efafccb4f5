"""Drop-zone motion analysis of a clip, on the CPU with OpenCV.

The resident draws the drop zone (where parcels go) as a polygon on a still from the
camera, in normalized coordinates ((0, 0) top-left, (1, 1) bottom-right), so it holds at
any resolution. After an entry, `analyse` reports whether anything moved beyond the
zone, and for how long something moved at all.

How:
- ffmpeg decodes the clip to `fps` gray frames a second, `width` pixels wide.
- Each frame is blurred (5x5 Gaussian) and fed to a MOG2 background subtractor. The
  first `warmup_seconds` (the clip's pre-roll: the room before the door opens) teach it
  the background at its fast start-up rate and are not counted. After that it learns so
  slowly that something standing still only fades into the background after about
  `absorb_seconds`: a courier pausing at the drop spot still counts as present.
- The foreground is opened (3x3) to drop specks; `ignore` polygons (an on-screen clock,
  a TV, a window) are blanked; blobs smaller than `min_area` of the frame are dropped.
- A frame has motion if any blob remains, and motion beyond the zone if at least
  `min_area` of the frame's moving pixels lie outside the zone polygon. The clip is
  flagged when motion beyond the zone lasts `min_beyond_seconds` in total, so one
  noisy frame does not flag an entry.

Times in the report are seconds from the start of the clip.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from doorstep.video import process
from doorstep.video.errors import VideoError

Mask = npt.NDArray[np.uint8]
BACKGROUND_RATIO = 0.9  # MOG2's default: a new look becomes background past 1 - this


@dataclass(frozen=True)
class Zone:
    """A polygon in normalized coordinates."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.points) < 3:
            raise ValueError("a zone needs at least three points")
        if not all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in self.points):
            raise ValueError("zone points are normalized: 0 <= x, y <= 1")

    def mask(self, width: int, height: int) -> Mask:
        """255 inside the polygon, 0 outside, for a width x height frame."""
        mask = np.zeros((height, width), dtype=np.uint8)
        corners = np.array([[round(x * width), round(y * height)] for x, y in self.points])
        cv2.fillPoly(mask, [corners.astype(np.int32)], 255)
        return mask


@dataclass(frozen=True)
class MotionOptions:
    fps: float = 5.0  # frames analysed per second of video
    width: int = 160  # analysis width in pixels (height keeps the aspect ratio)
    min_area: float = 0.004  # smallest blob that counts, as a share of the frame
    min_beyond_seconds: float = 0.4
    warmup_seconds: float = 1.0
    absorb_seconds: float = 30.0
    threshold: float = 25.0  # MOG2 varThreshold (squared Mahalanobis distance)


@dataclass(frozen=True)
class MotionReport:
    beyond_zone: bool  # motion beyond the zone for at least `min_beyond_seconds`
    motion_seconds: float  # time with motion anywhere
    beyond_seconds: float  # time with motion beyond the zone
    first_motion_at: float | None
    last_motion_at: float | None
    frames: int  # frames analysed (after the warm-up)
    fps: float

    @property
    def presence_seconds(self) -> float:
        """From the first to the last frame with motion: how long someone was in view."""
        if self.first_motion_at is None or self.last_motion_at is None:
            return 0.0
        return self.last_motion_at - self.first_motion_at + 1 / self.fps


def analyse(
    video: Path,
    zone: Zone,
    *,
    ignore: Sequence[Zone] = (),
    options: MotionOptions | None = None,
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
) -> MotionReport:
    """Where and how long things moved in `video`, relative to the drop `zone`."""
    options = options or MotionOptions()
    width, height = _analysis_size(video, options.width, ffprobe)
    zone_mask = zone.mask(width, height)
    ignored = np.zeros((height, width), dtype=np.uint8)
    for region in ignore:
        ignored |= region.mask(width, height)
    tally = _Tally(options, min_pixels=options.min_area * width * height)
    subtractor = cv2.createBackgroundSubtractorMOG2(
        history=max(1, round(options.fps * options.absorb_seconds)),
        varThreshold=options.threshold,
        detectShadows=False,
    )
    warmup = round(options.fps * options.warmup_seconds)
    slow = -math.log(BACKGROUND_RATIO) / (options.fps * options.absorb_seconds)
    for index, frame in enumerate(_frames(video, width, height, options.fps, ffmpeg)):
        blurred = cv2.GaussianBlur(frame, (5, 5), 0)
        rate = -1 if index < warmup else slow
        foreground = np.asarray(subtractor.apply(blurred, learningRate=rate), dtype=np.uint8)
        if index >= warmup:
            moving = _blobs(foreground, ignored, tally.min_pixels)
            tally.add(index / options.fps, moving, zone_mask)
    return tally.report()


class _Tally:
    def __init__(self, options: MotionOptions, *, min_pixels: float) -> None:
        self.options = options
        self.min_pixels = min_pixels
        self.frames = self.moving = self.beyond = 0
        self.first: float | None = None
        self.last: float | None = None

    def add(self, at: float, moving: Mask, zone_mask: Mask) -> None:
        self.frames += 1
        if not moving.any():
            return
        self.moving += 1
        self.first = at if self.first is None else self.first
        self.last = at
        outside = np.count_nonzero(moving & ~zone_mask)
        if outside >= self.min_pixels:
            self.beyond += 1

    def report(self) -> MotionReport:
        fps = self.options.fps
        return MotionReport(
            beyond_zone=self.beyond / fps >= self.options.min_beyond_seconds,
            motion_seconds=self.moving / fps,
            beyond_seconds=self.beyond / fps,
            first_motion_at=self.first,
            last_motion_at=self.last,
            frames=self.frames,
            fps=fps,
        )


def _blobs(foreground: Mask, ignored: Mask, min_pixels: float) -> Mask:
    """The foreground's blobs of at least `min_pixels`, outside the ignored regions."""
    cleaned = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    cleaned[ignored > 0] = 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cleaned, connectivity=8)
    big = [label for label in range(1, count) if stats[label, cv2.CC_STAT_AREA] >= min_pixels]
    return np.where(np.isin(labels, big), 255, 0).astype(np.uint8)


def _analysis_size(video: Path, width: int, ffprobe: str) -> tuple[int, int]:
    streams = process.probe(video, ffprobe=ffprobe).get("streams", [])
    pictures = [s for s in streams if s.get("codec_type") == "video"]
    if not pictures:
        raise VideoError(f"{video.name} has no video stream")
    source_width, source_height = int(pictures[0]["width"]), int(pictures[0]["height"])
    height = max(2, round(width * source_height / source_width / 2) * 2)
    return width, height


def _frames(video: Path, width: int, height: int, fps: float, ffmpeg: str) -> Iterator[Mask]:
    """The video as `fps` gray width x height frames a second, decoded by ffmpeg."""
    argv = [
        *(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video)),
        *("-vf", f"fps={fps},scale={width}:{height}:flags=area,format=gray"),
        *("-f", "rawvideo", "pipe:1"),
    ]
    decoder = process.spawn(argv, stdout=subprocess.PIPE)
    assert decoder.stdout is not None
    size = width * height
    try:
        while len(data := decoder.stdout.read(size)) == size:
            yield np.frombuffer(data, dtype=np.uint8).reshape(height, width)
    finally:
        process.stop(decoder, timeout=5)
    if decoder.returncode not in (0, None):
        raise VideoError(f"ffmpeg could not decode {video.name}")
