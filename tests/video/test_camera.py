"""The simulated camera streams real, decodable H.264 on loopback, and can fail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from doorstep.video import process
from doorstep.video.camera import SimulatedCamera, Source
from doorstep.video.errors import CameraError
from doorstep.video.scene import DOOR, DOOR_OPEN, DOOR_SHUT, FIGURE, SceneRenderer, delivery_walk

Cameras = Callable[..., SimulatedCamera]


def capture(url: str, path: Path, seconds: float = 2.0) -> dict[str, object]:
    """Copy `seconds` of the stream to a file, as a recorder would, and probe it."""
    process.run(
        [
            *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "fatal", "-y"),
            *("-analyzeduration", "1000000", "-probesize", "1000000", "-i", url),
            *("-map", "0:v:0", "-c", "copy", "-t", str(seconds), str(path)),
        ],
        timeout=15,
    )
    video = process.probe(path)["streams"][0]
    assert isinstance(video, dict)
    return video


@pytest.mark.parametrize("source", [Source.PATTERN, Source.SCENE])
def test_camera_streams_decodable_h264(cameras: Cameras, source: Source, tmp_path: Path) -> None:
    camera = cameras(source, width=160, height=120, fps=15)
    video = capture(camera.url, tmp_path / "capture.ts")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 160, 120)
    assert video["r_frame_rate"] == "15/1"
    frames = process.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "capture.ts"), "-f", "framemd5", "-"],
        timeout=15,
    ).decode()
    assert sum(1 for line in frames.splitlines() if not line.startswith("#")) >= 15


def test_killed_camera_stops_streaming_and_can_come_back(cameras: Cameras) -> None:
    camera = cameras(Source.PATTERN)
    pid = camera.pid
    camera.kill()
    assert not camera.running
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    camera.start()
    assert camera.running and camera.pid != pid


def test_walking_needs_a_scene(cameras: Cameras) -> None:
    with pytest.raises(CameraError):
        cameras(Source.PATTERN).walk(delivery_walk((0.2, 0.8)))


def test_odd_sizes_are_refused() -> None:
    with pytest.raises(CameraError):
        SimulatedCamera(width=161, height=120)


def test_scene_draws_the_figure_on_its_path_and_opens_the_door() -> None:
    renderer = SceneRenderer(160, 120)
    walk = delivery_walk((0.25, 0.75), enter_at=1.0)
    before = renderer.render(walk, 0.0, 0)
    at_drop = renderer.render(walk, 3.0, 1)
    door_rows, door_columns = DOOR.pixels(160, 120)
    assert before[door_rows, door_columns].max() == DOOR_SHUT
    assert (before == FIGURE).sum() == 0
    assert at_drop[90, 40] == FIGURE  # (0.25, 0.75) of 160x120
    assert (at_drop[door_rows, door_columns] == DOOR_OPEN).any()
    assert (before[:4] != renderer.render(walk, 0.0, 1)[:4]).any()  # the clock ticks


def test_frozen_scene_repeats_one_picture(cameras: Cameras) -> None:
    camera = cameras(Source.SCENE)
    camera.freeze()
    assert camera.frozen
    frames = process.run(
        [
            *("ffmpeg", "-v", "fatal", "-analyzeduration", "1000000", "-i", camera.url),
            *("-frames:v", "20", "-f", "framemd5", "-"),
        ],
        timeout=15,
    ).decode()
    hashes = [line.rsplit(",", 1)[1] for line in frames.splitlines() if not line.startswith("#")]
    assert len(hashes) == 20
    # One picture (give or take encoder rounding), where a live scene's clock gives 20.
    assert len(set(hashes)) <= 3
    camera.unfreeze()
    assert not camera.frozen
