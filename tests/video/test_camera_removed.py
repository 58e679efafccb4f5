"""A door's camera taken off the hub's configuration in the middle of an entry: at the
hub's next start the entry's video is not left behind in the spool, unencrypted and
unsent, but cut into a clip (to where the recording stopped) and queued for upload."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub import runner
from doorstep.hub.camera import RecorderCamera
from doorstep.hub.uploader import Queued, Uploader
from doorstep.video import process
from doorstep.video.camera import SimulatedCamera, Source
from doorstep.video.recorder import Recorder, RecorderOptions, WindowKept
from polling import wait_until

from .support import wait_for_pre_roll

PRE_ROLL = 1.0
GOP = 1.0  # the simulated camera's keyframe interval
FPS = 15
HUB = "hub-camera-removed"


def _record_mid_entry(camera: SimulatedCamera, spool: Path, entry_id: str) -> float:
    """A hub that stopped in the middle of `entry_id`, with 2 s of it recorded; when the
    last of them had been received."""
    recorder = Recorder(camera.url, spool, RecorderOptions(pre_roll=PRE_ROLL))
    recorder.start()
    try:
        wait_for_pre_roll(recorder, PRE_ROLL)
        kept = recorder.arm(entry_id)
        target = recorder.liveness().frames + 2 * FPS
        wait_until(lambda: recorder.liveness().frames >= target, 10, "two seconds of the entry")
        recorded_until = time.time()
    finally:
        recorder.stop()
    with pytest.raises(WindowKept):
        kept.result(timeout=5)
    return recorded_until


def _start_without(data_dir: Path, specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the restarted hub builds for its cameras, from its lock configuration."""
    options = runner.HubOptions(data_dir=data_dir)
    config: Any = SimpleNamespace(hub_id=HUB)
    return dict(runner._cameras(options, config, specs, Ed25519PrivateKey.generate()))


def test_a_camera_removed_mid_entry_leaves_its_video_queued_not_in_the_spool(
    cameras: Callable[..., SimulatedCamera], tmp_path: Path
) -> None:
    camera = cameras(Source.SCENE, fps=FPS)
    spool = tmp_path / "video" / "front"
    recorded_until = _record_mid_entry(camera, spool, "ent-removed")
    assert list((spool / "segments").glob("*.ts")), "the stopped hub kept the entry's video"

    # Restarted with the front door's camera gone; the back door still has one.
    built = _start_without(tmp_path, {"front": {}, "back": {"camera": camera.url}})

    assert list(built) == ["back"] and isinstance(built["back"], RecorderCamera)
    assert not spool.exists()
    queued = _queued(tmp_path)
    assert [item.meta["entry_id"] for item in queued] == ["ent-removed"]
    meta = queued[0].meta
    assert meta["access_point"] == "front"
    assert meta["complete"] is False  # cut where the recording stopped, not a whole entry
    # From before the entry to where the recording stopped (give or take the frames of
    # the last keyframe interval, cut from the same file as ffmpeg stopped).
    assert meta["started_at"] <= meta["armed_at"]
    assert meta["ended_at"] >= recorded_until - GOP
    video = tmp_path / "uploads" / queued[0].clip_id / "video.mp4"
    assert process.probe_duration(video) >= meta["ended_at"] - meta["started_at"] - 0.2


_DYING_SALVAGE = """
import os, sys
from pathlib import Path
from doorstep.hub.camera import salvage_spool

class DiesAsItQueues:
    def enqueue(self, clip, *, access_point):
        os._exit(17)  # the hub's power is cut as the clip is handed to the uploader

salvage_spool(Path(sys.argv[1]), access_point="front", uploader=DiesAsItQueues())
"""


def test_a_hub_that_dies_while_salvaging_salvages_the_clip_at_its_next_start(
    cameras: Callable[..., SimulatedCamera], tmp_path: Path
) -> None:
    camera = cameras(Source.SCENE, fps=FPS)
    spool = tmp_path / "video" / "front"
    _record_mid_entry(camera, spool, "ent-salvage-crash")

    dying = subprocess.run(
        [sys.executable, "-c", _DYING_SALVAGE, str(spool)],
        timeout=60,
        check=False,
    )
    assert dying.returncode == 17, "the salvage never handed a clip over"

    assert _start_without(tmp_path, {"front": {}}) == {}
    assert not spool.exists()
    queued = _queued(tmp_path)
    assert [item.meta["entry_id"] for item in queued] == ["ent-salvage-crash"]
    assert queued[0].meta["complete"] is False
    queue = _uploader(tmp_path)
    queue._forget(queued[0].clip_id)
    queue.close()


def test_clip_files_a_dying_hub_never_queued_are_deleted_at_start(tmp_path: Path) -> None:
    queued = _uploader(tmp_path)
    kept = queued.directory / "clip-queued"
    kept.mkdir()
    (kept / "video.mp4").write_bytes(b"queued")
    queued._db.execute("INSERT INTO pending (clip_id, meta) VALUES ('clip-queued', '{}')")
    queued._db.commit()
    left = queued.directory / "clip-never-queued"  # moved in, then the process died
    left.mkdir()
    (left / "video.mp4").write_bytes(b"plaintext of a home")
    queued.close()

    restarted = _uploader(tmp_path)
    try:
        assert not left.exists()
        assert (kept / "video.mp4").read_bytes() == b"queued"
    finally:
        restarted.close()


def test_with_no_camera_left_the_salvaged_clip_is_still_sent(
    cameras: Callable[..., SimulatedCamera], tmp_path: Path
) -> None:
    camera = cameras(Source.SCENE, fps=FPS)
    spool = tmp_path / "video" / "front"
    _record_mid_entry(camera, spool, "ent-last-camera")

    assert _start_without(tmp_path, {"front": {}}) == {}

    assert not spool.exists()
    queued = _queued(tmp_path)
    assert [item.meta["entry_id"] for item in queued] == ["ent-last-camera"]
    # No camera keeps the uploader going, so it sends the queue by itself (here it
    # cannot reach a service: it keeps trying, as a hub offline would)...
    wait_until(
        lambda: sum(item.attempts for item in _queued(tmp_path)) >= 1, 10, "an upload attempt"
    )
    # ... until the queue is empty (the worker then stops).
    queue = _uploader(tmp_path)
    queue._forget(queued[0].clip_id)
    queue.close()


def _uploader(data_dir: Path) -> Uploader:
    return Uploader(data_dir, hub_id=HUB, key=Ed25519PrivateKey.generate())


def _queued(data_dir: Path) -> list[Queued]:
    queue = _uploader(data_dir)
    try:
        return queue.pending()
    finally:
        queue.close()


def test_a_draining_uploader_stops_once_its_queue_is_empty(tmp_path: Path) -> None:
    uploader = _uploader(tmp_path)
    uploader.drain()
    worker = uploader._thread
    assert worker is not None
    worker.join(timeout=10)
    assert not worker.is_alive()
    uploader.close()
