"""Reading a clip's duration from its MP4 movie header (`clips.mp4_duration`), which
replaced an ffprobe run on the way to a playable clip: it must say what ffprobe says."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from doorstep.video import process
from doorstep.video.clips import mp4_duration
from doorstep.video.errors import VideoError


def _encode(path: Path, seconds: float, *, faststart: bool, fps: int = 15) -> Path:
    movflags = ["-movflags", "+faststart"] if faststart else []
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=320x180:rate={fps}", "-t", f"{seconds}", "-c:v", "libx264",
         "-g", str(fps), *movflags, str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("faststart", [True, False], ids=["moov-first", "moov-last"])
@pytest.mark.parametrize("seconds", [1.0, 2.4, 6.0])
def test_duration_matches_ffprobe(tmp_path: Path, faststart: bool, seconds: float) -> None:
    video = _encode(tmp_path / "clip.mp4", seconds, faststart=faststart)
    assert mp4_duration(video) == pytest.approx(process.probe_duration(video), abs=0.002)
    assert mp4_duration(video) == pytest.approx(seconds, abs=0.1)


def test_a_version_1_header_with_64_bit_fields_is_read(tmp_path: Path) -> None:
    mvhd = struct.pack(">B3xQQIQ", 1, 0, 0, 90000, 90000 * 7 // 2) + bytes(80)
    moov = _box(b"moov", _box(b"mvhd", mvhd))
    path = tmp_path / "v1.mp4"
    path.write_bytes(_box(b"ftyp", b"isom" + bytes(4)) + moov)
    assert mp4_duration(path) == 3.5


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not an mp4 at all, just text",
        b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00",  # no moov
        b"\x00\x00\x00\x08moov",  # moov without mvhd
        b"\x00\x00\xff\xffmoov\x00\x00\x00\x0cmvhd",  # a box larger than the file
        b"\x00\x00\x00\x14moov\x00\x00\x00\x0cmvhd\x00\x00\x00\x00",  # truncated mvhd
    ],
    ids=["empty", "text", "no-moov", "no-mvhd", "overrun", "truncated"],
)
def test_what_is_not_a_readable_mp4_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError):
        mp4_duration(path)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload
