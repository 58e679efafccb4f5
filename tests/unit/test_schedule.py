"""Grant schedules on the home's wall clock: both ends included to the second, weekday
edges, and daylight-saving changes (Europe/Paris: spring forward 2026-03-29 02:00 ->
03:00, fall back 2026-10-25 03:00 -> 02:00)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from doorstep.errors import InvalidRequest
from doorstep.grants.schedule import ScheduleKind, build

PARIS = ZoneInfo("Europe/Paris")
SECOND = timedelta(seconds=1)


def at(text: str) -> datetime:
    """A Paris wall-clock time as an instant (first occurrence if repeated)."""
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).astimezone(UTC)


def weekly(*windows: dict[str, object]) -> object:
    return build(ScheduleKind.WEEKLY, PARIS, starts_at=None, ends_at=None, windows=list(windows))


def test_weekly_window_includes_both_ends_to_the_second() -> None:
    schedule = weekly({"days": ["mon", "wed"], "start": "09:00", "end": "17:00"})
    monday = "2026-11-23"
    assert not schedule.allows(at(f"{monday}T09:00:00") - SECOND)
    assert schedule.allows(at(f"{monday}T09:00:00"))
    assert schedule.allows(at(f"{monday}T17:00:00"))
    assert not schedule.allows(at(f"{monday}T17:00:00") + SECOND)


def test_weekly_window_holds_only_on_its_days() -> None:
    schedule = weekly({"days": ["mon"], "start": "00:00", "end": "23:59"})
    assert schedule.allows(at("2026-11-23T00:00:00"))  # Monday, first second
    assert not schedule.allows(at("2026-11-23T00:00:00") - SECOND)  # Sunday, last second
    assert schedule.allows(at("2026-11-23T23:59:00"))
    assert not schedule.allows(at("2026-11-24T00:00:00"))  # Tuesday


def test_weekly_window_follows_the_wall_clock_across_spring_forward() -> None:
    # Sunday 29 March 2026: at 02:00 Paris clocks jump to 03:00.
    schedule = weekly({"days": ["sun"], "start": "01:30", "end": "03:30"})
    start = at("2026-03-29T01:30:00")
    end = datetime(2026, 3, 29, 3, 30, tzinfo=PARIS).astimezone(UTC)
    assert schedule.allows(start) and schedule.allows(end)
    assert not schedule.allows(end + SECOND)
    assert end - start == timedelta(hours=1)  # an hour shorter in real time that night
    # A window inside the skipped hour never opens that day.
    skipped = weekly({"days": ["sun"], "start": "02:05", "end": "02:55"})
    moment = at("2026-03-29T01:00:00")
    while moment < at("2026-03-29T04:00:00"):
        assert not skipped.allows(moment)
        moment += timedelta(minutes=1)


def test_weekly_window_in_the_repeated_autumn_hour_opens_for_both_readings() -> None:
    # Sunday 25 October 2026: at 03:00 (summer time) Paris clocks go back to 02:00.
    schedule = weekly({"days": ["sun"], "start": "02:10", "end": "02:20"})
    first = datetime(2026, 10, 25, 2, 15, tzinfo=PARIS, fold=0).astimezone(UTC)
    second = datetime(2026, 10, 25, 2, 15, tzinfo=PARIS, fold=1).astimezone(UTC)
    assert second - first == timedelta(hours=1)
    assert schedule.allows(first) and schedule.allows(second)
    assert not schedule.allows(first + timedelta(minutes=30))  # 02:45, first reading


def test_range_is_stored_as_utc_instants_and_holds_across_a_dst_change() -> None:
    schedule = build(
        ScheduleKind.RANGE,
        PARIS,
        starts_at=datetime(2026, 10, 24, 22, 0),
        ends_at=datetime(2026, 10, 25, 6, 0),
        windows=[],
    )
    assert schedule.starts_at == datetime(2026, 10, 24, 20, 0, tzinfo=UTC)  # CEST, +2
    assert schedule.ends_at == datetime(2026, 10, 25, 5, 0, tzinfo=UTC)  # CET, +1
    assert schedule.allows(schedule.starts_at) and schedule.allows(schedule.ends_at)
    assert not schedule.allows(schedule.starts_at - SECOND)
    assert not schedule.allows(schedule.ends_at + SECOND)


def test_a_local_time_that_does_not_exist_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="does not exist"):
        build(
            ScheduleKind.RANGE,
            PARIS,
            starts_at=datetime(2026, 3, 29, 2, 30),
            ends_at=datetime(2026, 3, 29, 5, 0),
            windows=[],
        )


def test_a_repeated_local_time_means_its_first_occurrence() -> None:
    schedule = build(
        ScheduleKind.ONCE,
        PARIS,
        starts_at=datetime(2026, 10, 25, 2, 30),
        ends_at=datetime(2026, 10, 25, 4, 0),
        windows=[],
    )
    assert schedule.starts_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # still CEST


@pytest.mark.parametrize(
    ("kind", "starts", "ends", "windows", "problem"),
    [
        (ScheduleKind.RANGE, None, datetime(2026, 1, 2), [], "needs starts_at and ends_at"),
        (ScheduleKind.ONCE, datetime(2026, 1, 2), datetime(2026, 1, 1), [], "after starts_at"),
        (ScheduleKind.WEEKLY, None, None, [], "1 to 7 windows"),
        (ScheduleKind.ALWAYS, datetime(2026, 1, 1), None, [], "takes no times"),
        (
            ScheduleKind.WEEKLY,
            None,
            None,
            [{"days": ["mon"], "start": "10:00", "end": "09:00"}],
            "end after it starts",
        ),
        (
            ScheduleKind.WEEKLY,
            None,
            None,
            [{"days": ["someday"], "start": "09:00", "end": "10:00"}],
            "days must be",
        ),
        (
            ScheduleKind.RANGE,
            datetime(2026, 1, 1),
            datetime(2026, 1, 2),
            [{"days": ["mon"], "start": "09:00", "end": "10:00"}],
            "no weekly windows",
        ),
    ],
)
def test_schedules_that_make_no_sense_are_refused_clearly(
    kind: ScheduleKind,
    starts: datetime | None,
    ends: datetime | None,
    windows: list[dict[str, object]],
    problem: str,
) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        build(kind, PARIS, starts_at=starts, ends_at=ends, windows=windows)


def test_what_lets_someone_in_now_ends_with_the_stretch_of_the_schedule() -> None:
    """`open_until`: a grant signed inside a window must not outlive it (a 5-minute grant
    asked for at 16:58 would otherwise open the door until 17:03)."""
    office = build(
        ScheduleKind.WEEKLY, PARIS, starts_at=None, ends_at=None,
        windows=[
            {"days": ["mon"], "start": "09:00", "end": "17:00"},
            {"days": ["mon"], "start": "16:00", "end": "18:30"},  # overlapping: the later end
        ],
    )  # fmt: skip
    assert office.open_until(at("2026-11-23T10:00:00")) == at("2026-11-23T17:00:00")
    assert office.open_until(at("2026-11-23T16:58:00")) == at("2026-11-23T18:30:00")
    until_noon = build(
        ScheduleKind.WEEKLY, PARIS, starts_at=None,
        ends_at=datetime(2026, 11, 23, 12, 0),
        windows=[{"days": ["mon"], "start": "09:00", "end": "17:00"}],
    )  # fmt: skip
    assert until_noon.open_until(at("2026-11-23T10:00:00")) == at("2026-11-23T12:00:00")
    one_day = build(
        ScheduleKind.RANGE, PARIS, starts_at=datetime(2026, 11, 23, 8, 0),
        ends_at=datetime(2026, 11, 23, 20, 0), windows=[],
    )  # fmt: skip
    assert one_day.open_until(at("2026-11-23T19:59:00")) == at("2026-11-23T20:00:00")
    always = build(ScheduleKind.ALWAYS, PARIS, starts_at=None, ends_at=None, windows=[])
    assert always.open_until(at("2026-11-23T10:00:00")) is None
