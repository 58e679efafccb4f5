"""The recorder against a real camera stream: clips, privacy, liveness, faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from doorstep.video import process
from doorstep.video.camera import SimulatedCamera, Source
from doorstep.video.crypto import FileKeyStore, HomeKey
from doorstep.video.errors import RecorderError
from doorstep.video.liveness import CameraState, Liveness
from doorstep.video.recorder import Recorder, RecorderOptions, WindowKept
from doorstep.video.storage import FileClipStore
from doorstep.video.vault import ClipVault, clips_outside
from polling import wait_until

from .support import moov_before_mdat, wait_for_pre_roll

PRE_ROLL = 2.0
GOP = 1.0
FPS = 15
Cameras = Callable[..., SimulatedCamera]
Recorders = Callable[..., Recorder]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatedCamera, Recorder]]:
    """One camera and its recorder, shared by the tests that only add entries."""
    camera = SimulatedCamera(Source.SCENE, width=160, height=120, fps=FPS)
    recorder = Recorder(
        camera.url, tmp_path_factory.mktemp("spool"), RecorderOptions(pre_roll=PRE_ROLL)
    )
    camera.start()
    recorder.start()
    try:
        wait_for_pre_roll(recorder, PRE_ROLL + 0.5)
        yield camera, recorder
    finally:
        recorder.stop()
        camera.stop()


def receive(recorder: Recorder, seconds: float) -> None:
    """Let `seconds` of video reach the recorder (counted in frames, not slept)."""
    target = recorder.liveness().frames + round(seconds * FPS)
    wait_until(lambda: recorder.liveness().frames >= target, seconds + 5, "frames")


def test_clip_runs_from_pre_roll_to_post_roll_as_faststart_mp4(
    rig: tuple[SimulatedCamera, Recorder],
) -> None:
    _, recorder = rig
    future = recorder.arm("ent-clip")
    receive(recorder, 3.0)
    assert recorder.disarm("ent-clip", post_roll=1.0) is future
    clip = future.result(timeout=15)
    # The segments the window held left the spool as the clip was handed over: it
    # holds the rolling pre-roll again, not the entry's video.
    handed_over = time.time()
    assert [s for s in recorder.segments() if s.end <= handed_over - PRE_ROLL - 0.5] == []
    assert clip.entry_id == "ent-clip" and clip.complete and clip.gaps == ()
    # Starts before the arm by the pre-roll, at most one GOP more (keyframe cut).
    assert PRE_ROLL <= clip.pre_roll <= PRE_ROLL + GOP + 0.2
    # Ends exactly at disarm + post-roll.
    assert clip.ended_at == pytest.approx(clip.stop_at)
    assert clip.post_roll == pytest.approx(1.0)
    window = clip.stop_at - (clip.armed_at - PRE_ROLL)
    probed = process.probe(clip.video)
    duration = float(probed["format"]["duration"])
    assert duration == pytest.approx(clip.duration)
    assert abs(duration - window) <= 1.0
    assert abs(duration - (clip.ended_at - clip.started_at)) <= 0.2
    assert probed["streams"][0]["codec_name"] == "h264"
    assert moov_before_mdat(clip.video)
    assert clip.thumbnail.read_bytes()[:2] == b"\xff\xd8"
    assert clip.video.stat().st_mode & 0o777 == 0o600


def test_spool_holds_only_a_rolling_pre_roll_between_entries(
    rig: tuple[SimulatedCamera, Recorder],
) -> None:
    _, recorder = rig
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # sample the spool for 3 s of recording
        now = time.time()
        for segment in recorder.segments():
            # Deleted within a maintenance pass (0.1 s) of leaving the pre-roll.
            assert segment.end > now - PRE_ROLL - 0.5, segment
        files = list(recorder.segments_dir.glob("*.ts"))
        assert len(files) <= PRE_ROLL / GOP + 2  # pre-roll + the segment being written
        receive(recorder, 0.25)
    assert list(recorder.continuous_dir.iterdir()) == []


def test_store_scan_finds_no_clip_outside_an_entry_window(
    rig: tuple[SimulatedCamera, Recorder], tmp_path: Path
) -> None:
    _, recorder = rig
    vault = ClipVault(
        FileClipStore(tmp_path / "store"), FileKeyStore(tmp_path / "keys"), HomeKey.generate()
    )
    windows = {}
    first = recorder.arm("ent-scan-1")
    receive(recorder, 1.0)
    second = recorder.arm("ent-scan-2")  # overlapping entries get a clip each
    receive(recorder, 1.0)
    recorder.disarm("ent-scan-1", post_roll=0.5)
    receive(recorder, 1.0)
    recorder.disarm("ent-scan-2", post_roll=0.5)
    for future in (first, second):
        clip = future.result(timeout=15)
        # The entry's window as the service knows it: authorized .. relocked + post-roll.
        windows[clip.entry_id] = (clip.armed_at, clip.stop_at)
        vault.archive(clip)
        assert not clip.video.parent.exists()  # archived: no plaintext left
    assert len(vault.clip_ids()) == 2
    assert clips_outside(vault, windows, slack=PRE_ROLL + GOP + 0.2) == []
    assert clips_outside(vault, windows, slack=0.0) != []  # the pre-roll is outside


def test_entry_ids_are_checked(rig: tuple[SimulatedCamera, Recorder]) -> None:
    _, recorder = rig
    with pytest.raises(RecorderError):
        recorder.arm("../escape")
    with pytest.raises(RecorderError):
        recorder.disarm("ent-never-armed")
    recorder.arm("ent-twice")
    with pytest.raises(RecorderError):
        recorder.arm("ent-twice")
    recorder.disarm("ent-twice", post_roll=0).result(timeout=15)


def test_recorder_reads_the_camera_on_loopback_only(
    rig: tuple[SimulatedCamera, Recorder],
) -> None:
    camera, _ = rig
    port = f"{camera.port:04X}"
    sockets = [line.split() for line in Path("/proc/net/udp").read_text().splitlines()[1:]]
    bound = [local for _, local, *_ in sockets if local.endswith(f":{port}")]
    assert bound == [f"0100007F:{port}"]  # 127.0.0.1, not 0.0.0.0


def test_camera_killed_mid_entry_is_reported_stalled_within_3_s(
    cameras: Cameras, recorders: Recorders
) -> None:
    reports: list[tuple[float, Liveness]] = []
    camera = cameras(Source.SCENE)
    recorder = recorders(
        camera.url,
        close_timeout=1.0,
        on_liveness=lambda status: reports.append((time.monotonic(), status)),
    )
    wait_for_pre_roll(recorder, PRE_ROLL)
    future = recorder.arm("ent-lost")
    receive(recorder, 1.0)
    killed_at, killed_wall = time.monotonic(), time.time()
    camera.kill()
    stalled = wait_until(
        lambda: next((at for at, s in reports if s.state is CameraState.STALLED), None),
        5.0,
        "a stalled report",
    )
    assert stalled - killed_at <= 3.0
    assert not recorder.liveness().live  # the hub refuses to unlock now
    recorder.disarm("ent-lost", post_roll=0.5)
    clip = future.result(timeout=15)
    assert not clip.complete
    # The clip keeps what arrived before the loss.
    assert clip.ended_at >= killed_wall - 1.0
    assert clip.duration >= PRE_ROLL + 0.5
    camera.start()
    wait_until(lambda: recorder.liveness().live, 10.0, "the camera to be live again")


def test_frozen_camera_is_reported_frozen(cameras: Cameras, recorders: Recorders) -> None:
    camera = cameras(Source.SCENE)
    recorder = recorders(camera.url, frozen_after=2.0)
    wait_until(lambda: recorder.liveness().live, 10.0, "a live camera")
    receive(recorder, 2.5)
    assert recorder.liveness().live  # the clock overlay keeps a still room live
    camera.freeze()
    frozen = wait_until(
        lambda: recorder.liveness().state is CameraState.FROZEN and recorder.liveness(),
        6.0,
        "a frozen report",
    )
    assert frozen.still_for >= 2.0 and frozen.frame_age is not None and frozen.frame_age < 1.0
    camera.unfreeze()
    wait_until(lambda: recorder.liveness().live, 4.0, "a live picture again")


def test_recorder_restarts_ffmpeg_and_keeps_no_stray_segment(
    cameras: Cameras, recorders: Recorders
) -> None:
    camera = cameras(Source.SCENE)
    recorder = recorders(camera.url, restart_delay=0.2)
    wait_for_pre_roll(recorder, 1.0)
    first = recorder.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # a crash: its open segment is never listed
    wait_until(lambda: recorder.pid not in (None, first), 5.0, "a new ffmpeg")
    frames = recorder.liveness().frames
    wait_until(lambda: recorder.liveness().frames > frames + 15, 10.0, "frames again")
    # The crashed run's open segment was adopted, then expired with the pre-roll.
    crashed = lambda: [p for p in recorder.segments_dir.glob("r0001-*.ts")]  # noqa: E731
    wait_until(lambda: not crashed(), PRE_ROLL + 3.0, "the crashed run's files to expire")


def test_stop_keeps_an_open_entry_for_the_next_start(cameras: Cameras, tmp_path: Path) -> None:
    camera = cameras(Source.SCENE)
    spool = tmp_path / "spool"
    first = Recorder(camera.url, spool, RecorderOptions(pre_roll=PRE_ROLL))
    first.start()
    try:
        wait_for_pre_roll(first, PRE_ROLL)
        armed = first.arm("ent-restart")
        receive(first, 2.0)
        finished = first.arm("ent-ended")
        first.disarm("ent-ended", post_roll=0.0)
    finally:
        first.stop()
    with pytest.raises(WindowKept):
        armed.result(timeout=1)
    assert finished.result(timeout=1).entry_id == "ent-ended"  # disarmed: cut at stop
    stopped_at = time.time()
    assert list(spool.joinpath("segments").glob("*.ts"))  # the open entry's video

    second = Recorder(camera.url, spool, RecorderOptions(pre_roll=PRE_ROLL))
    second.start()
    try:
        restored = second.restored()
        assert list(restored) == ["ent-restart"]
        with pytest.raises(RecorderError, match="already armed"):
            second.arm("ent-restart")
        receive(second, 1.5)
        second.disarm("ent-restart", post_roll=0.5)
        clip = restored["ent-restart"].result(timeout=15)
    finally:
        second.stop()
    # One clip from before the first run's arm to after the second run's disarm, with
    # the restart as its one gap.
    assert clip.armed_at < stopped_at - 2.0
    assert clip.started_at <= clip.armed_at - PRE_ROLL
    assert clip.ended_at == pytest.approx(clip.stop_at, abs=0.2)
    assert len(clip.gaps) == 1 and clip.gaps[0][0] < stopped_at < clip.gaps[0][1]
    assert not clip.complete
    assert clip.duration >= PRE_ROLL + 2.0 + 1.5
    assert not second.segments_dir.exists()  # nothing held: nothing kept


_CRASHING_RECORDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])  # tests/, for the bounded waits of `polling`
from polling import wait_until
from doorstep.video.recorder import Recorder, RecorderOptions
pre_roll = float(sys.argv[3])
recorder = Recorder(sys.argv[1], Path(sys.argv[2]), RecorderOptions(pre_roll=pre_roll))
recorder.start()
wait_until(lambda: recorder.buffered_seconds() >= pre_roll, 30, "the pre-roll")
recorder.arm("ent-crash")
armed = recorder.liveness().frames
wait_until(lambda: recorder.liveness().frames >= armed + 30, 30, "two seconds of the entry")
print(time.time(), flush=True)
sys.stdin.read()  # until the test kills this process
"""


def test_a_recorder_killed_mid_entry_loses_none_of_its_video(
    cameras: Cameras, tmp_path: Path
) -> None:
    camera = cameras(Source.SCENE)
    spool = tmp_path / "spool"
    with subprocess.Popen(
        [sys.executable, "-c", _CRASHING_RECORDER, camera.url, str(spool), str(PRE_ROLL),
         str(Path(__file__).parents[1])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as crashing:  # fmt: skip
        try:
            assert crashing.stdout is not None
            line = crashing.stdout.readline()  # two seconds of the entry are recorded
            assert line, "the recorder in the child process did not arm"
            recorded_until = float(line)
        finally:
            crashing.kill()  # its ffmpeg dies with it
            crashing.wait(timeout=10)

    recorder = Recorder(camera.url, spool, RecorderOptions(pre_roll=PRE_ROLL))
    recorder.start()
    try:
        restored = recorder.restored()
        assert list(restored) == ["ent-crash"]
        # What the crashed run recorded outside the window is gone; the rest is held.
        window = recorder.windows()[0]
        for segment in recorder.segments():
            assert window.overlaps(segment), segment
        receive(recorder, 1.0)
        recorder.disarm("ent-crash", post_roll=0.5)
        clip = restored["ent-crash"].result(timeout=15)
    finally:
        recorder.stop()
    assert clip.started_at <= clip.armed_at - PRE_ROLL
    # The crashed run's last segment, never closed by its ffmpeg, is in the clip.
    assert clip.gaps and clip.gaps[0][0] >= recorded_until - 0.2
    assert clip.duration >= PRE_ROLL + 1.5 + 1.0


def test_a_spool_left_without_open_entries_is_cleared_at_start(
    cameras: Cameras, tmp_path: Path
) -> None:
    camera = cameras(Source.SCENE)
    spool = tmp_path / "spool"
    (spool / "segments").mkdir(parents=True)
    (spool / "segments" / "r0007-00000001.ts").write_bytes(b"left by a crash")
    (spool / "windows.json").write_text("not json")
    recorder = Recorder(camera.url, spool, RecorderOptions(pre_roll=PRE_ROLL))
    recorder.start()
    try:
        assert recorder.restored() == {}
        assert not (spool / "segments" / "r0007-00000001.ts").exists()
        assert not (spool / "windows.json").exists()
        wait_until(lambda: recorder.segments(), 10.0, "a segment")
        assert all(s.path.name.startswith("r0008-") for s in recorder.segments())
    finally:
        recorder.stop()


def test_continuous_recording_keeps_segments(cameras: Cameras, recorders: Recorders) -> None:
    camera = cameras(Source.PATTERN)
    recorder = recorders(camera.url, pre_roll=1.0, continuous=True)
    wait_until(
        lambda: len(list(recorder.continuous_dir.glob("*.ts"))) >= 2,
        15.0,
        "segments kept by continuous recording",
    )


def test_a_clip_is_handed_over_while_its_window_is_still_on_record(
    cameras: Cameras, recorders: Recorders
) -> None:
    """A hub that dies as a clip is handed over (before the uploader has queued it) must
    find the entry's window at its next start, to cut the clip again."""
    camera = cameras(Source.SCENE)
    recorder = recorders(camera.url, pre_roll=PRE_ROLL)
    wait_for_pre_roll(recorder, PRE_ROLL)
    on_record_at_hand_over: list[bool] = []

    def hand_over(_done: object) -> None:
        saved = recorder.spool / "windows.json"
        on_record_at_hand_over.append(saved.exists() and "ent-handover" in saved.read_text())

    recorder.arm("ent-handover").add_done_callback(hand_over)
    receive(recorder, 1.0)
    clip = recorder.disarm("ent-handover", post_roll=0.0).result(timeout=15)

    assert clip.entry_id == "ent-handover"
    # The future's waiters wake before its callbacks run: wait for the hand-over itself.
    wait_until(lambda: on_record_at_hand_over, 5, "the hand-over")
    assert on_record_at_hand_over == [True]
    wait_until(lambda: not recorder.windows(), 5, "the window let go after the hand-over")
    assert not (recorder.spool / "windows.json").exists()
