"""LivenessMonitor: stalled and frozen cameras, driven by a hand-moved clock."""

from __future__ import annotations

import numpy as np
import pytest

from doorstep.video.liveness import THUMB_BYTES, CameraState, LivenessMonitor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def monitor(clock: Clock) -> LivenessMonitor:
    return LivenessMonitor(stalled_after=2.0, frozen_after=3.0, startup_grace=5.0, clock=clock)


def picture(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, THUMB_BYTES, dtype=np.uint8).tobytes()


def test_starting_until_the_first_frame_then_stalled_after_the_grace(
    monitor: LivenessMonitor, clock: Clock
) -> None:
    assert monitor.status().state is CameraState.STARTING
    clock.now += 5.0
    assert monitor.status().state is CameraState.STALLED


def test_live_while_frames_flow_and_stalled_when_they_stop(
    monitor: LivenessMonitor, clock: Clock
) -> None:
    for frames in range(4, 40, 4):
        clock.now += 0.25
        monitor.on_progress(frames)
        monitor.on_keyframe(picture(frames))
        assert monitor.status().state is CameraState.LIVE
    clock.now += 1.9
    assert monitor.status().live
    clock.now += 0.1
    status = monitor.status()
    assert status.state is CameraState.STALLED
    assert status.frames == 36
    assert status.frame_age == pytest.approx(2.0)


def test_a_repeated_counter_is_not_a_new_frame(monitor: LivenessMonitor, clock: Clock) -> None:
    monitor.on_progress(10)
    clock.now += 2.5
    monitor.on_progress(10)
    assert monitor.status().state is CameraState.STALLED


def test_same_picture_for_frozen_after_seconds_is_frozen(
    monitor: LivenessMonitor, clock: Clock
) -> None:
    still = picture(1)
    for second in range(5):
        monitor.on_progress(15 * (second + 1))
        monitor.on_keyframe(still)
        status = monitor.status()
        assert status.state is (CameraState.FROZEN if second >= 3 else CameraState.LIVE)
        clock.now += 1.0
    assert status.still_for == pytest.approx(4.0)
    assert status.frame_hash is not None and len(status.frame_hash) == 16


def test_a_re_encoded_still_within_tolerance_is_frozen(
    monitor: LivenessMonitor, clock: Clock
) -> None:
    base = np.frombuffer(picture(2), dtype=np.uint8).astype(np.int16)
    for second in range(5):
        jitter = np.random.default_rng(second).integers(-2, 3, THUMB_BYTES)
        monitor.on_progress(15 * (second + 1))
        monitor.on_keyframe(np.clip(base + jitter, 0, 255).astype(np.uint8).tobytes())
        clock.now += 1.0
    monitor.on_progress(100)
    assert monitor.status().state is CameraState.FROZEN


def test_a_changing_picture_is_never_frozen(monitor: LivenessMonitor, clock: Clock) -> None:
    still = np.frombuffer(picture(3), dtype=np.uint8).copy()
    for second in range(8):
        still[second] ^= 0x80  # one pixel of an on-screen clock changes, by 128 levels
        monitor.on_progress(15 * (second + 1))
        monitor.on_keyframe(still.tobytes())
        clock.now += 1.0
        assert monitor.status().state is not CameraState.FROZEN


def test_stalled_wins_over_frozen(monitor: LivenessMonitor, clock: Clock) -> None:
    for second in range(5):
        monitor.on_progress(15 * (second + 1))
        monitor.on_keyframe(picture(4))
        clock.now += 1.0
    clock.now += 2.0
    assert monitor.status().state is CameraState.STALLED


def test_frames_keep_counting_across_ffmpeg_restarts(
    monitor: LivenessMonitor, clock: Clock
) -> None:
    monitor.on_progress(30)
    monitor.restarted()
    clock.now += 0.5
    monitor.on_progress(4)
    status = monitor.status()
    assert status.frames == 34
    assert status.live
