"""Drop-zone analysis: a figure that stays in the zone is not flagged, one that walks
beyond it is; first on scenes encoded offline, then through a live camera and recorder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from doorstep.video.camera import SimulatedCamera, Source
from doorstep.video.motion import MotionOptions, Zone, analyse
from doorstep.video.recorder import Recorder
from doorstep.video.scene import OSD, delivery_walk, walk_span
from polling import wait_until

from .support import render_scene_clip, wait_for_pre_roll

# The resident's drop zone: the left part of the hall, door included.
ZONE = Zone(((0.0, 0.0), (0.45, 0.0), (0.45, 1.0), (0.0, 1.0)))
CLOCK = Zone(OSD.corners())
DROP = (0.25, 0.75)
INTO_THE_HOUSE = (0.8, 0.7)


def test_figure_staying_in_the_zone_is_not_flagged(tmp_path: Path) -> None:
    walk = delivery_walk(DROP)
    clip = render_scene_clip(tmp_path / "inside.mp4", walk, seconds=walk_span(walk) + 3)
    report = analyse(clip, ZONE, ignore=[CLOCK])
    assert not report.beyond_zone
    assert report.beyond_seconds == 0.0
    # In view from the door opening to the door closing, the walk give or take 1 s.
    assert report.presence_seconds == pytest.approx(walk_span(walk), abs=1.0)
    assert report.first_motion_at == pytest.approx(1.5, abs=0.6)


def test_figure_walking_beyond_the_zone_is_flagged(tmp_path: Path) -> None:
    walk = delivery_walk(DROP, beyond=INTO_THE_HOUSE)
    clip = render_scene_clip(tmp_path / "beyond.mp4", walk, seconds=walk_span(walk) + 3)
    report = analyse(clip, ZONE, ignore=[CLOCK])
    assert report.beyond_zone
    # The detour: a leg out, a pause, a leg back (1.5 + 1 + 1.5 s), beyond the line
    # for most of it.
    assert 1.5 <= report.beyond_seconds <= 4.5
    assert report.presence_seconds == pytest.approx(walk_span(walk), abs=1.0)


def test_empty_room_has_no_motion(tmp_path: Path) -> None:
    clip = render_scene_clip(tmp_path / "empty.mp4", (), seconds=4)
    report = analyse(clip, ZONE, ignore=[CLOCK])
    assert (report.motion_seconds, report.first_motion_at, report.beyond_zone) == (0, None, False)
    assert report.frames == pytest.approx(15, abs=1)  # 4 s at 5 fps, less the 1 s warm-up


def test_the_zone_covering_everything_flags_nothing(tmp_path: Path) -> None:
    walk = delivery_walk(DROP, beyond=INTO_THE_HOUSE)
    clip = render_scene_clip(tmp_path / "all.mp4", walk, seconds=walk_span(walk) + 2)
    everything = Zone(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
    assert not analyse(clip, everything, ignore=[CLOCK]).beyond_zone


def test_a_short_excursion_below_the_threshold_is_not_flagged(tmp_path: Path) -> None:
    walk = delivery_walk(DROP, beyond=INTO_THE_HOUSE)
    clip = render_scene_clip(tmp_path / "beyond.mp4", walk, seconds=walk_span(walk) + 2)
    strict = analyse(clip, ZONE, ignore=[CLOCK], options=MotionOptions(min_beyond_seconds=60))
    assert not strict.beyond_zone and strict.beyond_seconds > 0


@pytest.mark.parametrize(
    "points",
    [((0.0, 0.0), (1.0, 1.0)), ((0.0, 0.0), (1.2, 0.0), (1.0, 1.0)), ((-0.1, 0), (1, 0), (1, 1))],
)
def test_zones_are_normalized_polygons(points: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ValueError):
        Zone(points)


def test_zone_mask_follows_the_frame_size() -> None:
    mask = ZONE.mask(160, 120)
    assert mask.shape == (120, 160)
    assert mask[60, 10] == 255 and mask[60, 150] == 0


@pytest.mark.slow
@pytest.mark.parametrize(("beyond", "flagged"), [(None, False), (INTO_THE_HOUSE, True)])
def test_live_entry_through_the_recorder(
    cameras: Callable[..., SimulatedCamera],
    recorders: Callable[..., Recorder],
    beyond: tuple[float, float] | None,
    flagged: bool,
) -> None:
    camera = cameras(Source.SCENE)
    recorder = recorders(camera.url)
    wait_for_pre_roll(recorder, 2.0)
    future = recorder.arm("ent-motion")
    walk = delivery_walk(DROP, beyond=beyond)
    camera.walk(walk)
    target = recorder.liveness().frames + round((walk_span(walk) + 0.5) * camera.fps)
    wait_until(lambda: recorder.liveness().frames >= target, walk_span(walk) + 6, "the walk")
    recorder.disarm("ent-motion", post_roll=1.0)
    report = analyse(
        future.result(timeout=15).video, ZONE, ignore=[Zone(camera.osd_region.corners())]
    )
    assert report.beyond_zone is flagged
    assert report.presence_seconds == pytest.approx(walk_span(walk), abs=1.5)
