"""Helpers for the video tests: waiting for the recorder's pre-roll, MP4 box order,
ready-made clips."""

from __future__ import annotations

import subprocess
from pathlib import Path

from doorstep.video.clips import Clip
from doorstep.video.recorder import Recorder
from doorstep.video.scene import SceneRenderer, Walk
from polling import wait_until


def wait_for_pre_roll(recorder: Recorder, seconds: float, timeout: float = 15.0) -> None:
    wait_until(
        lambda: recorder.liveness().live and recorder.buffered_seconds() >= seconds,
        timeout,
        f"{seconds} s of pre-roll in the spool",
    )


def moov_before_mdat(path: Path) -> bool:
    """True when the MP4's top-level boxes put the index (moov) before the media."""
    order = []
    with path.open("rb") as mp4:
        while header := mp4.read(8):
            size, kind = int.from_bytes(header[:4], "big"), header[4:].decode("latin-1")
            order.append(kind)
            if size == 1:
                size = int.from_bytes(mp4.read(8), "big") - 8
            mp4.seek(size - 8, 1)
    return "moov" in order and "mdat" in order and order.index("moov") < order.index("mdat")


def make_clip(directory: Path, *, seconds: float = 2.0, clip_id: str = "a" * 32) -> Clip:
    """A small real clip (H.264 MP4 + JPEG) made straight from ffmpeg's test source."""
    directory.mkdir(parents=True, exist_ok=True)
    video, thumbnail = directory / "clip.mp4", directory / "thumbnail.jpg"
    source = f"testsrc2=size=160x120:rate=15:duration={seconds}"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source),
            *("-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", str(video)),
        ],
        check=True,
        timeout=30,
    )
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video)),
            *("-frames:v", "1", str(thumbnail)),
        ],
        check=True,
        timeout=30,
    )
    start = 1_800_000_000.0
    return Clip(
        clip_id=clip_id,
        entry_id="ent-0123456789abcdef",
        video=video,
        thumbnail=thumbnail,
        started_at=start,
        ended_at=start + seconds,
        duration=seconds,
        armed_at=start + 0.5,
        disarmed_at=start + seconds - 0.5,
        stop_at=start + seconds,
        gaps=(),
        complete=True,
    )


def render_scene_clip(
    path: Path, walk: Walk, *, seconds: float, lead: float = 1.5, fps: int = 15
) -> Path:
    """Encode the generated scene offline (faster than real time) into an MP4: `lead`
    seconds of empty room, then `walk` starting, `seconds` long in all."""
    renderer = SceneRenderer(160, 120)
    argv = [
        *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
        *("-f", "rawvideo", "-pix_fmt", "gray", "-video_size", "160x120"),
        *("-framerate", str(fps), "-i", "pipe:0"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-pix_fmt", "yuv420p"),
        str(path),
    ]
    frames = b"".join(
        renderer.render(walk, index / fps - lead, index).tobytes()
        for index in range(round(seconds * fps))
    )
    subprocess.run(argv, input=frames, check=True, timeout=60)
    return path
