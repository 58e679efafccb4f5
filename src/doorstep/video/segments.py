"""Spool segments and recording windows: which video to keep, which to delete.

The recorder's ffmpeg writes one MPEG-TS file per GOP into the spool and,
as each file is closed, appends a line to a CSV list (`-segment_list_type csv`):
`name,start,end`. Its input is stamped with the wall clock on arrival
(`-use_wallclock_as_timestamps 1`, kept by `-copyts`), so start and end are Unix times:
start is the arrival of the segment's first (key)frame, end that of the next segment's
first frame. ffmpeg writes 0 as the start of each run's first segment, whose true start
the recorder reads from the file instead (`with_start`).

A `Window` is one entry's recording: from `armed_at - pre_roll` to `stop_at` (the
disarm time plus the post-roll), open-ended until disarmed. A segment is kept while it
overlaps a window; outside every window it is kept only while it could still serve as a
future entry's pre-roll (it ended less than `pre_roll` seconds ago), then deleted.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

ENTRY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Segment:
    """One closed spool file and the wall-clock span of its frames."""

    path: Path
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def with_start(self, start: float) -> Segment:
        return replace(self, start=start)


@dataclass
class Window:
    """One entry's recording window (mutable: `stop_at` is set at disarm)."""

    entry_id: str
    armed_at: float
    pre_roll: float
    disarmed_at: float | None = None
    stop_at: float | None = None

    @property
    def start_at(self) -> float:
        return self.armed_at - self.pre_roll

    def overlaps(self, segment: Segment) -> bool:
        return segment.end > self.start_at and (
            self.stop_at is None or segment.start < self.stop_at
        )

    def covered_by(self, segments: Iterable[Segment]) -> bool:
        """True once a closed segment reaches the end of the window."""
        return self.stop_at is not None and any(s.end >= self.stop_at for s in segments)


class SegmentList:
    """Reads the lines ffmpeg appends to one run's CSV segment list."""

    def __init__(self, csv_path: Path) -> None:
        self.path = csv_path
        self._offset = 0

    def read_new(self) -> list[Segment]:
        """Segments closed since the last call (complete lines only)."""
        try:
            with self.path.open("rb") as listing:
                listing.seek(self._offset)
                data = listing.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [self._parse(line) for line in complete.decode().splitlines() if line]

    def _parse(self, line: str) -> Segment:
        name, start, end = line.rsplit(",", 2)
        return Segment(self.path.parent / name, float(start), float(end))


def needed(segment: Segment, windows: Iterable[Window]) -> bool:
    return any(window.overlaps(segment) for window in windows)


def expired(segment: Segment, *, now: float, pre_roll: float) -> bool:
    """Too old to be any future entry's pre-roll."""
    return segment.end <= now - pre_roll


def for_window(segments: Iterable[Segment], window: Window) -> list[Segment]:
    """The segments of `window`, in time order."""
    return sorted((s for s in segments if window.overlaps(s)), key=lambda s: s.start)


def gaps(segments: Sequence[Segment], *, tolerance: float = 0.5) -> list[tuple[float, float]]:
    """Holes longer than `tolerance` seconds between consecutive segments."""
    return [
        (before.end, after.start)
        for before, after in itertools.pairwise(segments)
        if after.start - before.end > tolerance
    ]


def valid_entry_id(entry_id: str) -> bool:
    """Entry ids name spool directories: letters, digits, `_ . -`, at most 128."""
    return ENTRY_ID.fullmatch(entry_id) is not None
