"""Fixtures for the video tests: real ffmpeg cameras and recorders on loopback.

Every camera and recorder a test starts is stopped at teardown. Waiting is done by
polling a condition with a deadline (`support.wait_until`), never by sleeping a fixed time.
Small pictures (160x120 or 320x240, 15 fps) keep the CPU low on a shared machine.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from doorstep.video.camera import SimulatedCamera, Source
from doorstep.video.liveness import Liveness
from doorstep.video.recorder import Recorder, RecorderOptions


@pytest.fixture(autouse=True, scope="session")
def _ffmpeg() -> None:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the video tests need {', '.join(missing)} (apt-get install ffmpeg)")


@pytest.fixture
def cameras() -> Iterator[Callable[..., SimulatedCamera]]:
    """Start simulated cameras; all are stopped at teardown."""
    started: list[SimulatedCamera] = []

    def start(source: Source = Source.SCENE, **options: Any) -> SimulatedCamera:
        camera = SimulatedCamera(source, **{"width": 160, "height": 120, **options})
        started.append(camera)
        camera.start()
        return camera

    yield start
    for camera in started:
        camera.stop()


@pytest.fixture
def recorders(tmp_path: Path) -> Iterator[Callable[..., Recorder]]:
    """Start recorders on a camera URL, each with its own spool; stopped at teardown."""
    started: list[Recorder] = []

    def start(
        url: str, *, on_liveness: Callable[[Liveness], None] | None = None, **options: Any
    ) -> Recorder:
        spool = tmp_path / f"spool{len(started)}"
        settings = RecorderOptions(**{"pre_roll": 2.0, **options})
        recorder = Recorder(url, spool, settings, on_liveness=on_liveness)
        started.append(recorder)
        recorder.start()
        return recorder

    yield start
    for recorder in started:
        recorder.stop()
