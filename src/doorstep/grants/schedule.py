"""When an access grant lets someone in, in the home's own time zone.

A grant's schedule mirrors the Matter Door Lock cluster's schedules, so that what the
service allows for the app and what the lock allows for a keypad code are the same:
- `always`: any time (Matter: an unrestricted user).
- `weekly`: windows on days of the week, start and end times on the home's wall clock
  (Matter: week-day schedules), optionally within a validity period.
- `range`: from one moment to another (Matter: a year-day schedule).
- `once`: a range that admits one entry (Matter: a disposable user).

Rules, the same as the lock's (see `doorstep.hub.keypad`):
- Windows include both ends, to the second: a weekly window 09:00-17:00 lets in from
  09:00:00 through 17:00:00 on its days; a range from its start through its end.
- Weekly windows follow the wall clock. Across a daylight-saving change a window is
  an hour shorter in real time on a spring-forward night (and a window inside the
  skipped hour does not open that day), and one inside the repeated autumn hour is
  open during both readings of that hour.
- Ranges are entered as local date-times and stored as UTC instants plus the zone.
  A local time that does not exist (inside a spring-forward gap) is refused; one that
  happens twice (the autumn hour) means its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from doorstep.errors import InvalidRequest

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_WINDOWS = 7  # per grant; what a Matter lock commonly supports per user


class ScheduleKind(StrEnum):
    ALWAYS = "always"
    WEEKLY = "weekly"
    RANGE = "range"
    ONCE = "once"


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """Days (bit 0 = Monday, as `date.weekday()`) and a wall-clock start and end."""

    days: int
    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        if not self.days & (1 << local.weekday()):
            return False
        # Whole seconds: 17:00:00.4 is still 17:00:00 on the lock's clock.
        moment = local.time().replace(microsecond=0, tzinfo=None)
        return self.start <= moment <= self.end

    def to_json(self) -> dict[str, object]:
        return {
            "days": [day for bit, day in enumerate(WEEKDAYS) if self.days & (1 << bit)],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> WeeklyWindow:
        days = raw.get("days")
        start, end = raw.get("start"), raw.get("end")
        if not isinstance(days, list) or not days or not all(day in WEEKDAYS for day in days):
            raise InvalidRequest(f"a window's days must be a non-empty list of {WEEKDAYS}")
        if not isinstance(start, str) or not isinstance(end, str):
            raise InvalidRequest("a window needs start and end times as HH:MM")
        window = cls(sum(1 << WEEKDAYS.index(day) for day in set(days)), _hhmm(start), _hhmm(end))
        if window.start >= window.end:
            raise InvalidRequest(f"a window must end after it starts ({start}-{end})")
        return window


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: ScheduleKind
    zone: ZoneInfo
    starts_at: datetime | None = None  # UTC
    ends_at: datetime | None = None  # UTC
    windows: tuple[WeeklyWindow, ...] = ()

    def allows(self, now: datetime) -> bool:
        """Whether `now` (an aware instant) is inside this schedule."""
        if self.starts_at is not None and now < self.starts_at:
            return False
        if self.ends_at is not None and now > self.ends_at:
            return False
        if self.kind != ScheduleKind.WEEKLY:
            return True
        local = now.astimezone(self.zone)
        return any(window.covers(local) for window in self.windows)

    def open_until(self, now: datetime) -> datetime | None:
        """For a `now` the schedule allows: when the stretch it is in ends (the end of
        the weekly window, or of the validity period if sooner), None if never. What
        lets someone in now must not outlive it."""
        end = self.ends_at
        if self.kind == ScheduleKind.WEEKLY:
            local = now.astimezone(self.zone)
            ends = [
                local.replace(hour=window.end.hour, minute=window.end.minute, second=0)
                for window in self.windows
                if window.covers(local)
            ]
            if ends:
                window_end = max(ends).replace(microsecond=0).astimezone(UTC)
                end = window_end if end is None else min(end, window_end)
        return end

    def ended(self, now: datetime) -> bool:
        """Whether the schedule can never let anyone in again."""
        return self.ends_at is not None and now > self.ends_at


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock date-time in `zone` as a UTC instant. A time that does not exist
    there (a spring-forward gap) is refused; a repeated one is its first occurrence."""
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    first = local.replace(tzinfo=zone, fold=0)
    # A round trip through UTC lands elsewhere only for a time in the gap.
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
        raise InvalidRequest(
            f"{local.isoformat()} does not exist in {zone.key} (the clocks skip it)"
        )
    return first.astimezone(UTC)


def build(
    kind: ScheduleKind,
    zone: ZoneInfo,
    *,
    starts_at: datetime | None,
    ends_at: datetime | None,
    windows: list[dict[str, object]],
) -> Schedule:
    """A schedule from what a resident entered (local date-times, HH:MM windows),
    checked: clear errors for anything that could never let anyone in or is ambiguous."""
    start = local_to_utc(starts_at, zone) if starts_at is not None else None
    end = local_to_utc(ends_at, zone) if ends_at is not None else None
    if kind in (ScheduleKind.RANGE, ScheduleKind.ONCE) and (start is None or end is None):
        raise InvalidRequest(f"a {kind} grant needs starts_at and ends_at")
    if kind == ScheduleKind.ALWAYS and (start or end or windows):
        raise InvalidRequest("an always grant takes no times or windows")
    if start is not None and end is not None and start >= end:
        raise InvalidRequest("ends_at must be after starts_at")
    if kind == ScheduleKind.WEEKLY:
        if not windows or len(windows) > MAX_WINDOWS:
            raise InvalidRequest(f"a weekly grant needs 1 to {MAX_WINDOWS} windows")
        parsed = tuple(WeeklyWindow.from_json(window) for window in windows)
    elif windows:
        raise InvalidRequest(f"a {kind} grant takes no weekly windows")
    else:
        parsed = ()
    return Schedule(kind, zone, start, end, parsed)


def _hhmm(text: str) -> time:
    try:
        hours, minutes = text.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError(text)
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise InvalidRequest(f"{text!r} is not a time of day as HH:MM") from exc
