"""A stored clip's video by HTTP Range, as RFC 9110 section 14 has it: one satisfiable
range is a 206; a range no byte of the clip satisfies (past its end, a suffix of zero
bytes) is a 416 naming the clip's size (`Content-Range: bytes */<size>`); a header the
grammar makes invalid, another unit or several ranges are ignored: the whole clip, 200."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from doorstep import demo
from doorstep.hub import config as hub_config
from doorstep.hub.uploader import RetryPolicy, Uploader
from doorstep.video.clips import Clip


@pytest.fixture
def stored_clip(world: demo.World, tmp_path: Path) -> tuple[str, bytes]:
    """A clip of a finished entry, uploaded by the hub and stored: its id and video."""
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    home.door("open_door")
    home.door("close_door")
    done = demo.wait_entry(courier, entry["id"], "done")
    folder = tmp_path / "spool" / "clips" / "c1"  # the uploader takes the folder over
    folder.mkdir(parents=True)
    video, thumbnail = folder / "clip.mp4", folder / "thumbnail.jpg"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi"),
            *("-i", "testsrc2=size=160x120:rate=10:duration=1", "-c:v", "libx264"),
            *("-pix_fmt", "yuv420p", str(video)),
        ],
        check=True,
    )
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(video), "-frames:v", "1", str(thumbnail)],
        check=True,
    )
    data = video.read_bytes()
    start = datetime.fromisoformat(done["unlocked_at"]).timestamp()
    end = datetime.fromisoformat(done["done_at"]).timestamp()
    clip = Clip(
        clip_id="c1" * 16,
        entry_id=done["id"],
        video=video,
        thumbnail=thumbnail,
        started_at=start,
        ended_at=end,
        duration=1.0,
        armed_at=start,
        disarmed_at=end,
        stop_at=end,
        gaps=(),
        complete=True,
    )
    uploader = Uploader(
        home.hub_dir,
        hub_id=home.hub_id,
        key=hub_config.signing_key(home.hub_dir),
        service_url=world.service.url,
        retry=RetryPolicy(first_seconds=0.0),
    )
    uploader.enqueue(clip, access_point="front")
    assert uploader.run_pending() == 1
    uploader.close()
    return clip.clip_id, data


def _get(world: demo.World, clip_id: str, range_header: str) -> Any:
    http = world.homes[0].resident.http
    return http.get(f"/v1/clips/{clip_id}/video", headers={"range": range_header})


SATISFIABLE = [  # header, first byte, last byte (negative: from the end)
    ("bytes=0-9", 0, 9),
    ("bytes=10-", 10, -1),
    ("bytes=-10", -10, -1),
    ("bytes=5-5", 5, 5),
    ("bytes=0-999999999999", 0, -1),
    ("Bytes=0-9", 0, 9),  # range units are case-insensitive
    ("bytes=0-9,", 0, 9),  # an empty list element is no range (RFC 9110 5.6.1.2)
    ("bytes=" + "0" * 30 + "5-9", 5, 9),
]
UNSATISFIABLE = [
    "bytes=-0",  # a suffix of no bytes
    "bytes={size}-",
    "bytes={size}-{size}",
    "bytes=1" + "0" * 5000 + "-",  # past any clip, and past what int() parses
]
IGNORED = [
    "bytes=5-3",  # ends before it starts: an invalid range, not an unsatisfiable one
    "bytes=-",  # neither a first position nor a suffix length
    "bytes=a-b",
    "bytes=0-1,5-6",  # several ranges
    "bytes=0-9, -0",
    "items=0-9",  # a unit the service does not know
]


def test_a_range_is_served_as_rfc_9110_says(
    live: Any, world: demo.World, stored_clip: tuple[str, bytes]
) -> None:
    clip_id, video = stored_clip
    size = len(video)
    http = world.homes[0].resident.http

    def get(header: str) -> Any:
        return http.get(f"/v1/clips/{clip_id}/video", headers={"range": header})

    for header, first, last in SATISFIABLE:
        start, end = first % size, last % size + 1
        response = get(header)
        assert response.status_code == 206, (header, response.text)
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", header
        assert response.content == video[start:end], header
    for header in UNSATISFIABLE:
        response = get(header.format(size=size))
        assert response.status_code == 416, (header, response.text)
        assert response.headers["content-range"] == f"bytes */{size}", header
        assert response.json()["error"]["code"] == "range_not_satisfiable"
    for header in IGNORED:
        response = get(header)
        assert response.status_code == 200, (header, response.text)
        assert "content-range" not in response.headers, header
        assert response.content == video, header
