"""Spool bookkeeping: ffmpeg's segment list, windows, what to keep and what to delete."""

from __future__ import annotations

from pathlib import Path

from doorstep.video.segments import (
    Segment,
    SegmentList,
    Window,
    expired,
    for_window,
    gaps,
    needed,
    valid_entry_id,
)


def seg(start: float, end: float) -> Segment:
    return Segment(Path(f"/spool/{start}.ts"), start, end)


def test_segment_list_reads_complete_lines_only(tmp_path: Path) -> None:
    listing = tmp_path / "r0001.csv"
    listing.write_text("r0001-00000000.ts,0.000000,100.5\nr0001-00000001.ts,100.5,10")
    segments = SegmentList(listing)
    assert segments.read_new() == [Segment(tmp_path / "r0001-00000000.ts", 0.0, 100.5)]
    with listing.open("a") as file:
        file.write("1.5\n")
    assert segments.read_new() == [Segment(tmp_path / "r0001-00000001.ts", 100.5, 101.5)]
    assert segments.read_new() == []


def test_missing_list_reads_as_nothing_yet(tmp_path: Path) -> None:
    assert SegmentList(tmp_path / "none.csv").read_new() == []


def test_window_keeps_pre_roll_and_everything_until_its_end() -> None:
    window = Window("ent-1", armed_at=100.0, pre_roll=3.0)
    assert not window.overlaps(seg(95.0, 97.0))
    assert window.overlaps(seg(96.5, 97.5))  # holds the window's first moment
    assert window.overlaps(seg(500.0, 501.0))  # open-ended until disarmed
    window.stop_at = 110.0
    assert window.overlaps(seg(109.5, 110.5))
    assert not window.overlaps(seg(110.0, 111.0))
    assert for_window([seg(109.5, 110.5), seg(96.5, 97.5), seg(90, 91)], window) == [
        seg(96.5, 97.5),
        seg(109.5, 110.5),
    ]


def test_window_is_covered_once_a_closed_segment_reaches_its_end() -> None:
    window = Window("ent-1", armed_at=100.0, pre_roll=3.0, disarmed_at=105.0, stop_at=106.0)
    assert not window.covered_by([seg(104.0, 105.0), seg(105.0, 105.9)])
    assert window.covered_by([seg(105.0, 106.05)])


def test_unneeded_segments_expire_after_the_pre_roll() -> None:
    segment = seg(100.0, 101.0)
    assert not expired(segment, now=103.9, pre_roll=3.0)
    assert expired(segment, now=104.0, pre_roll=3.0)
    assert needed(segment, [Window("ent-1", armed_at=103.5, pre_roll=3.0)])
    assert not needed(segment, [Window("ent-1", armed_at=104.5, pre_roll=3.0)])


def test_gaps_between_segments_are_reported() -> None:
    segments = [seg(0, 1), seg(1.01, 2), seg(5, 6)]
    assert gaps(segments) == [(2, 5)]


def test_entry_ids_are_safe_names() -> None:
    assert valid_entry_id("ent-0123456789abcdef")
    for bad in ("", "../x", "a/b", ".hidden", "x" * 129, "a b"):
        assert not valid_entry_id(bad)
