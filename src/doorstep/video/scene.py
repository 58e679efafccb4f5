"""A generated indoor scene for the simulated camera: a hallway, a door, and a figure.

Frames are 8-bit grayscale (ffmpeg encodes them to H.264 4:2:0 with neutral chroma).
Coordinates are normalized: (0, 0) is the top-left corner, (1, 1) the bottom-right.

- The room: a wall over a floor, and a door on the left of the back wall
  (`DOOR`). The door opens (turns dark) while the figure is within half a second of
  being visible, and closes after it.
- The figure: a light box (`FIGURE_SIZE`) whose centre follows a `Walk`, a list of
  timed waypoints interpolated linearly; it is hidden before its first waypoint, after
  its last one, and from a waypoint marked `visible=False` to the next one.
- The clock: like a real camera's on-screen clock, a strip of cells in the top-left
  corner (`OSD`) shows the frame number in binary, so a live camera's picture changes
  every frame even when nothing moves. Liveness relies on that to tell a still room from
  a frozen stream; motion analysis should ignore that strip (as Frigate users mask the
  timestamp).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]

WALL, FLOOR, DOOR_SHUT, DOOR_OPEN, FIGURE = 150, 95, 70, 15, 235
HORIZON = 0.55  # where the wall meets the floor
OSD_BITS = 12


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in normalized coordinates."""

    left: float
    top: float
    right: float
    bottom: float

    def pixels(self, width: int, height: int) -> tuple[slice, slice]:
        """(rows, columns) slices covering this box in a width x height frame."""
        rows = slice(_clamp(self.top, height), _clamp(self.bottom, height))
        columns = slice(_clamp(self.left, width), _clamp(self.right, width))
        return rows, columns

    def corners(self) -> tuple[tuple[float, float], ...]:
        """The box as a polygon, clockwise from the top-left corner."""
        return (
            (self.left, self.top),
            (self.right, self.top),
            (self.right, self.bottom),
            (self.left, self.bottom),
        )


DOOR = Box(0.12, 0.12, 0.30, HORIZON)
DOORWAY = ((DOOR.left + DOOR.right) / 2, HORIZON - 0.12)  # where the figure appears
FIGURE_SIZE = (0.09, 0.34)  # width, height
OSD = Box(0.0, 0.0, 0.30, 0.035)


@dataclass(frozen=True)
class Waypoint:
    """Where the figure's centre is `at` seconds after its walk starts."""

    at: float
    x: float
    y: float
    visible: bool = True


Walk = tuple[Waypoint, ...]


def delivery_walk(
    drop: tuple[float, float],
    *,
    beyond: tuple[float, float] | None = None,
    enter_at: float = 0.5,
    stride: float = 1.5,
    dwell: float = 2.0,
) -> Walk:
    """A courier's walk: in through the door, to `drop`, a pause, and out again; with
    `beyond`, a detour from the drop spot to that point and back before leaving.

    `stride` is the time of each leg, `dwell` the time spent at each stop."""
    points = [Waypoint(enter_at, *DOORWAY)]
    now = enter_at + stride
    points.append(Waypoint(now, *drop))
    now += dwell
    points.append(Waypoint(now, *drop))
    if beyond is not None:
        for spot in (beyond, drop):
            now += stride
            points.append(Waypoint(now, *spot))
            now += dwell / 2
            points.append(Waypoint(now, *spot))
    now += stride
    points.append(Waypoint(now, *DOORWAY))
    return tuple(points)


def walk_span(walk: Sequence[Waypoint]) -> float:
    """Seconds from the walk's start to its last waypoint."""
    return walk[-1].at if walk else 0.0


def figure_at(walk: Sequence[Waypoint], t: float) -> tuple[float, float] | None:
    """The figure's centre at `t` seconds into the walk, or None while it is hidden."""
    for before, after in itertools.pairwise(walk):
        if before.at <= t <= after.at:
            if not before.visible:
                return None
            share = (t - before.at) / (after.at - before.at) if after.at > before.at else 1.0
            return before.x + share * (after.x - before.x), before.y + share * (after.y - before.y)
    return None


class SceneRenderer:
    """Draws the room, the door, the figure and the clock into reusable frames."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._room = self._draw_room()

    def render(self, walk: Sequence[Waypoint], t: float, frame_number: int) -> Frame:
        """The frame `t` seconds into `walk` (t < 0: before the walk starts)."""
        frame = self._room.copy()
        if self._door_open(walk, t):
            rows, columns = DOOR.pixels(self.width, self.height)
            frame[rows, columns] = DOOR_OPEN
        centre = figure_at(walk, t)
        if centre is not None:
            self._draw_figure(frame, centre)
        self._draw_clock(frame, frame_number)
        return frame

    def _draw_room(self) -> Frame:
        room = np.full((self.height, self.width), WALL, dtype=np.uint8)
        room[_clamp(HORIZON, self.height) :, :] = FLOOR
        rows, columns = DOOR.pixels(self.width, self.height)
        room[rows, columns] = DOOR_SHUT
        return room

    @staticmethod
    def _door_open(walk: Sequence[Waypoint], t: float) -> bool:
        return any(figure_at(walk, t + shift) is not None for shift in (-0.5, 0.0, 0.5))

    def _draw_figure(self, frame: Frame, centre: tuple[float, float]) -> None:
        half_width, half_height = FIGURE_SIZE[0] / 2, FIGURE_SIZE[1] / 2
        box = Box(
            centre[0] - half_width,
            centre[1] - half_height,
            centre[0] + half_width,
            centre[1] + half_height,
        )
        rows, columns = box.pixels(self.width, self.height)
        frame[rows, columns] = FIGURE

    def _draw_clock(self, frame: Frame, frame_number: int) -> None:
        rows, columns = OSD.pixels(self.width, self.height)
        cell = max(1, (columns.stop - columns.start) // OSD_BITS)
        for bit in range(OSD_BITS):
            lit = (frame_number >> bit) & 1
            start = columns.start + bit * cell
            frame[rows, start : start + cell] = 255 if lit else 0


def _clamp(share: float, size: int) -> int:
    return min(size, max(0, round(share * size)))
