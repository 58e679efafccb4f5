"""The simulated lock's keypad obeys the Matter Door Lock rules (TC_DRLK_2_2/2_3/2_5/2_9).

Time moves only through a ManualScheduler: it drives both the lockout timer and the
lock's wall clock (`clock` = a start instant + the scheduler's seconds), so schedules
and DST changes are tested without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from doorstep.hub.drivers.simulated import ManualScheduler, SimulatedLock
from doorstep.hub.keypad import (
    CLEAR_ALL,
    CLEAR_ALL_SCHEDULES,
    DaysMask,
    KeypadAttributes,
    KeypadError,
    KeypadLimits,
    KeypadLock,
    KeypadStatus,
    KeypadStore,
    PinCredential,
    PinSet,
    User,
    UserStatus,
    UserType,
    WeekDaySchedule,
    YearDaySchedule,
    local_epoch_seconds,
)
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    LockError,
    LockEvent,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)

PIN = "135792"
OTHER_PIN = "246801"
BAD_PIN = "000000"
MONDAY_NOON = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WORKDAYS = DaysMask.MONDAY | DaysMask.TUESDAY | DaysMask.WEDNESDAY | DaysMask.THURSDAY
WORKDAYS |= DaysMask.FRIDAY

UNLOCK, KEYPAD = LockOperationType.UNLOCK, OperationSource.KEYPAD
LOCKOUT_ALARM = DoorLockAlarm(AlarmCode.WRONG_CODE_ENTRY_LIMIT)


def let_in(user_index: int) -> LockOperation:
    return LockOperation(UNLOCK, KEYPAD, user_index)


def refused(error: OperationError, user_index: int | None = None) -> LockOperationError:
    return LockOperationError(UNLOCK, KEYPAD, error, user_index)


WRONG_CODE = refused(OperationError.INVALID_CREDENTIAL)
LOCKED_OUT = refused(OperationError.RESTRICTED)


@dataclass
class Rig:
    """A simulated lock whose wall clock starts at `start` and follows the scheduler."""

    scheduler: ManualScheduler
    lock: SimulatedLock
    events: list[LockEvent]
    start: datetime

    def go_to(self, when: datetime) -> None:
        self.scheduler.advance(when.timestamp() - self.start.timestamp() - self.scheduler.now)

    def type(self, pin: str) -> list[LockEvent]:
        """Type `pin` on the keypad; return the events it caused."""
        self.events.clear()
        self.lock.keypad_entry(pin)
        return list(self.events)


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig() -> MakeRig:
    def make(
        start: datetime = MONDAY_NOON,
        *,
        time_zone: tzinfo = UTC,
        limits: KeypadLimits | None = None,
        motor_seconds: float = 0.0,
    ) -> Rig:
        scheduler = ManualScheduler()
        lock = SimulatedLock(
            scheduler=scheduler,
            motor_seconds=motor_seconds,
            clock=lambda: start.timestamp() + scheduler.now,
            time_zone=time_zone,
            keypad_limits=limits,
        )
        events: list[LockEvent] = []
        lock.subscribe(events.append)
        return Rig(scheduler, lock, events, start)

    return make


@pytest.fixture
def rig(make_rig: MakeRig) -> Rig:
    """A lock with user 1 holding PIN in slot 1."""
    rig = make_rig()
    rig.lock.set_user(1, name="guest")
    rig.lock.set_pin(1, PIN, user_index=1)
    return rig


def keypad_error(call: Callable[..., object], *args: object, **kwargs: object) -> KeypadStatus:
    """The status of the KeypadError that `call(*args, **kwargs)` must raise."""
    with pytest.raises(KeypadError) as caught:
        call(*args, **kwargs)
    return caught.value.status


# --- the keypad lets in, and says who -------------------------------------------------


def test_the_lock_and_the_store_are_keypad_locks(make_rig: MakeRig) -> None:
    keypads: list[KeypadLock] = [make_rig().lock, KeypadStore()]
    assert all(k.get_user(1) is None for k in keypads)


def test_a_valid_code_unlocks_and_names_its_user(rig: Rig) -> None:
    assert rig.type(PIN) == [let_in(1)]
    assert rig.lock.status().lock_state is LockState.UNLOCKED


def test_the_keypad_unlock_waits_for_the_motor(make_rig: MakeRig) -> None:
    rig = make_rig(motor_seconds=1.0)
    rig.lock.set_pin(1, PIN, user_index=None)

    assert rig.type(PIN) == []
    rig.scheduler.advance(1.0)
    assert rig.events == [let_in(1)]


def test_a_pin_without_a_user_makes_one(make_rig: MakeRig) -> None:
    lock = make_rig().lock

    assert lock.set_pin(1, PIN, user_index=None) == PinSet(1, next_credential_index=2)
    assert lock.get_user(1) == User(
        1, "", UserStatus.OCCUPIED_ENABLED, UserType.UNRESTRICTED, credentials=(1,)
    )
    assert lock.get_pin(1) == PinCredential(1, user_index=1)


def test_a_disabled_user_is_denied(rig: Rig) -> None:
    rig.lock.set_user(1, status=UserStatus.OCCUPIED_DISABLED, modify=True)

    assert rig.type(PIN) == [refused(OperationError.DISABLED_USER_DENIED, 1)]
    assert rig.lock.status().lock_state is LockState.LOCKED


def test_a_remote_only_user_cannot_use_the_keypad(rig: Rig) -> None:
    rig.lock.set_user(1, user_type=UserType.REMOTE_ONLY, modify=True)

    assert rig.type(PIN) == [refused(OperationError.RESTRICTED, 1)]


def test_a_cleared_code_is_refused(rig: Rig) -> None:
    rig.lock.clear_pin(1)

    assert rig.type(PIN) == [WRONG_CODE]
    assert rig.lock.get_user(1) is None  # Matter: clearing a user's last PIN clears the user


def test_a_disposable_user_gets_in_once(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.lock.set_user(1, user_type=UserType.DISPOSABLE)
    rig.lock.set_pin(1, PIN, user_index=1)

    assert rig.type(PIN) == [let_in(1)]
    assert rig.type(PIN) == [refused(OperationError.DISABLED_USER_DENIED, 1)]


def test_a_disposable_code_is_not_spent_when_the_motor_cannot_move(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.lock.set_user(1, user_type=UserType.DISPOSABLE)
    rig.lock.set_pin(1, PIN, user_index=1)
    rig.lock.set_battery(0)

    assert rig.type(PIN) == [refused(OperationError.INSUFFICIENT_BATTERY, 1)]
    rig.lock.set_battery(50)
    assert rig.type(PIN) == [let_in(1)]


def test_the_keypad_works_while_the_radio_is_down(rig: Rig) -> None:
    rig.lock.set_online(False)

    assert rig.type(PIN) == [let_in(1)]
    with pytest.raises(LockError):
        rig.lock.set_pin(2, OTHER_PIN, user_index=1)


def test_a_closed_lock_takes_no_codes(rig: Rig) -> None:
    rig.lock.close()

    with pytest.raises(LockError):
        rig.lock.keypad_entry(PIN)
    with pytest.raises(LockError):
        rig.lock.get_user(1)


# --- wrong-code lockout (TC_DRLK_2_2 / 2_3) -------------------------------------------


def lock_out(rig: Rig, *, limit: int = 3, disable_seconds: int = 15) -> None:
    rig.lock.set_wrong_code_entry_limit(limit)
    rig.lock.set_user_code_temporary_disable_time(disable_seconds)
    for _ in range(limit):
        rig.type(BAD_PIN)


def test_lockout_sequence_as_in_tc_drlk_2_2(rig: Rig) -> None:
    rig.lock.set_wrong_code_entry_limit(3)
    rig.lock.set_user_code_temporary_disable_time(15)

    assert rig.type(BAD_PIN) == [WRONG_CODE]
    assert rig.type(BAD_PIN) == [WRONG_CODE]
    assert rig.type(BAD_PIN) == [WRONG_CODE, LOCKOUT_ALARM]

    assert rig.type(PIN) == [LOCKED_OUT]
    assert rig.lock.status().lock_state is LockState.LOCKED

    rig.scheduler.advance(14.9)
    assert rig.type(PIN) == [LOCKED_OUT]

    rig.scheduler.advance(0.1)
    assert rig.type(PIN) == [let_in(1)]
    assert rig.lock.status().lock_state is LockState.UNLOCKED


def test_codes_during_the_lockout_neither_count_nor_extend_it(rig: Rig) -> None:
    lock_out(rig)
    rig.scheduler.advance(10)
    for _ in range(5):
        assert rig.type(BAD_PIN) == [LOCKED_OUT]

    rig.scheduler.advance(5)
    assert rig.type(PIN) == [let_in(1)]


def test_a_code_that_lets_in_resets_the_wrong_code_count(rig: Rig) -> None:
    rig.lock.set_wrong_code_entry_limit(3)
    rig.type(BAD_PIN)
    rig.type(BAD_PIN)
    rig.type(PIN)

    assert rig.type(BAD_PIN) == [WRONG_CODE]
    assert rig.type(BAD_PIN) == [WRONG_CODE]


def test_only_unknown_codes_count_as_wrong(rig: Rig) -> None:
    rig.lock.set_wrong_code_entry_limit(1)
    rig.lock.set_user(1, status=UserStatus.OCCUPIED_DISABLED, modify=True)

    assert rig.type(PIN) == [refused(OperationError.DISABLED_USER_DENIED, 1)]
    assert rig.type(BAD_PIN) == [WRONG_CODE, LOCKOUT_ALARM]


def test_remote_unlock_is_not_affected_by_the_keypad_lockout(rig: Rig) -> None:
    lock_out(rig)
    rig.events.clear()

    rig.lock.unlock(OperationSource.REMOTE)

    assert rig.events == [LockOperation(UNLOCK, OperationSource.REMOTE)]


def test_close_cancels_the_lockout_timer(rig: Rig) -> None:
    lock_out(rig)
    rig.lock.close()

    assert rig.scheduler.pending == 0


@pytest.mark.parametrize("value", [0, 256])
def test_lockout_attributes_are_bounded(rig: Rig, value: int) -> None:
    limit = keypad_error(rig.lock.set_wrong_code_entry_limit, value)
    disable = keypad_error(rig.lock.set_user_code_temporary_disable_time, value)

    assert limit is disable is KeypadStatus.CONSTRAINT_ERROR


def test_lockout_attributes_read_back(rig: Rig) -> None:
    rig.lock.set_wrong_code_entry_limit(255)
    rig.lock.set_user_code_temporary_disable_time(1)

    assert rig.lock.keypad_attributes() == KeypadAttributes(KeypadLimits(), 255, 1)


# --- users ------------------------------------------------------------------------------


def test_adding_over_an_occupied_user_is_occupied(rig: Rig) -> None:
    assert keypad_error(rig.lock.set_user, 1) is KeypadStatus.OCCUPIED


def test_modifying_a_missing_user_is_invalid(rig: Rig) -> None:
    status = keypad_error(rig.lock.set_user, 2, name="x", modify=True)
    assert status is KeypadStatus.INVALID_COMMAND


def test_modify_keeps_the_fields_it_is_not_given(rig: Rig) -> None:
    rig.lock.set_user(1, user_type=UserType.WEEK_DAY_SCHEDULE, modify=True)

    assert rig.lock.get_user(1) == User(
        1, "guest", UserStatus.OCCUPIED_ENABLED, UserType.WEEK_DAY_SCHEDULE, credentials=(1,)
    )


@pytest.mark.parametrize(
    "change",
    [
        {"user_index": 0},
        {"user_index": 11},
        {"name": "eleven-char"},
        {"user_type": UserType.FORCED},
        {"user_type": UserType.EXPIRING},
        {"status": UserStatus.AVAILABLE},
    ],
)
def test_set_user_refuses_bad_fields(make_rig: MakeRig, change: dict[str, object]) -> None:
    lock = make_rig().lock
    fields: dict[str, object] = {"user_index": 1, **change}

    assert keypad_error(lock.set_user, **fields) is KeypadStatus.INVALID_COMMAND


def test_clearing_a_user_clears_its_pins_and_schedules(rig: Rig) -> None:
    rig.lock.set_week_day_schedule(1, 1, WORKDAYS, time(9), time(17))
    rig.lock.clear_user(1)
    rig.lock.set_user(1)

    assert rig.lock.get_pin(1) is None
    assert keypad_error(rig.lock.get_week_day_schedule, 1, 1) is KeypadStatus.NOT_FOUND
    assert rig.type(PIN) == [WRONG_CODE]


def test_clear_all_users(rig: Rig) -> None:
    rig.lock.set_pin(2, OTHER_PIN, user_index=None)

    rig.lock.clear_user(CLEAR_ALL)

    assert rig.lock.get_user(1) is rig.lock.get_user(2) is None
    assert rig.lock.get_pin(2) is None


# --- PIN credentials (TC_DRLK_2_9) -----------------------------------------------------


@pytest.mark.parametrize("pin", ["123", "123456789", "12a456", "١٢٣٤٥٦", ""])
def test_a_pin_is_four_to_eight_ascii_digits(rig: Rig, pin: str) -> None:
    status = keypad_error(rig.lock.set_pin, 2, pin, user_index=1)
    assert status is KeypadStatus.INVALID_COMMAND


@pytest.mark.parametrize("index", [0, 11])
def test_a_pin_slot_outside_the_limit_is_invalid(rig: Rig, index: int) -> None:
    status = keypad_error(rig.lock.set_pin, index, OTHER_PIN, user_index=1)
    assert status is KeypadStatus.INVALID_COMMAND


def test_the_same_pin_twice_is_duplicate(rig: Rig) -> None:
    assert keypad_error(rig.lock.set_pin, 2, PIN, user_index=1) is KeypadStatus.DUPLICATE


def test_a_taken_slot_is_occupied(rig: Rig) -> None:
    status = keypad_error(rig.lock.set_pin, 1, OTHER_PIN, user_index=1)
    assert status is KeypadStatus.OCCUPIED


def test_a_pin_for_a_missing_user_is_invalid(rig: Rig) -> None:
    status = keypad_error(rig.lock.set_pin, 2, OTHER_PIN, user_index=5)
    assert status is KeypadStatus.INVALID_COMMAND


def test_a_user_with_all_its_credentials_is_resource_exhausted(make_rig: MakeRig) -> None:
    lock = make_rig(limits=KeypadLimits(credentials_per_user=2)).lock
    lock.set_pin(1, "1111", user_index=None)
    lock.set_pin(2, "2222", user_index=1)

    status = keypad_error(lock.set_pin, 3, "3333", user_index=1)
    assert status is KeypadStatus.RESOURCE_EXHAUSTED


def test_a_new_user_with_every_slot_taken_is_resource_exhausted(make_rig: MakeRig) -> None:
    lock = make_rig(limits=KeypadLimits(total_users=2)).lock
    lock.set_pin(1, "1111", user_index=None)
    lock.set_pin(2, "2222", user_index=None)

    status = keypad_error(lock.set_pin, 3, "3333", user_index=None)
    assert status is KeypadStatus.RESOURCE_EXHAUSTED


def test_clear_one_pin_keeps_the_others(rig: Rig) -> None:
    assert rig.lock.set_pin(2, OTHER_PIN, user_index=1) == PinSet(1, next_credential_index=3)

    rig.lock.clear_pin(1)

    assert rig.lock.get_pin(1) is None
    assert rig.lock.get_pin(2) == PinCredential(2, user_index=1)
    assert rig.type(PIN) == [WRONG_CODE]
    assert rig.type(OTHER_PIN) == [let_in(1)]


def test_clear_all_pins(rig: Rig) -> None:
    rig.lock.set_pin(2, OTHER_PIN, user_index=None)

    rig.lock.clear_pin(CLEAR_ALL)
    rig.lock.clear_pin(1)  # clearing an empty slot succeeds

    assert rig.lock.get_pin(1) is rig.lock.get_pin(2) is None
    assert rig.type(PIN) == [WRONG_CODE]
    assert rig.type(OTHER_PIN) == [WRONG_CODE]


def test_modify_replaces_the_pin_in_its_slot(rig: Rig) -> None:
    assert rig.lock.set_pin(1, OTHER_PIN, user_index=1, modify=True).user_index == 1

    assert rig.type(PIN) == [WRONG_CODE]
    assert rig.type(OTHER_PIN) == [let_in(1)]


def test_modify_of_an_empty_slot_is_invalid(rig: Rig) -> None:
    status = keypad_error(rig.lock.set_pin, 2, OTHER_PIN, user_index=1, modify=True)
    assert status is KeypadStatus.INVALID_COMMAND


# --- week-day and year-day schedules (TC_DRLK_2_5) -----------------------------------


def test_week_day_schedule_set_get_clear(rig: Rig) -> None:
    rig.lock.set_week_day_schedule(1, 1, DaysMask.MONDAY, time(9, 30), time(17, 45))

    assert rig.lock.get_week_day_schedule(1, 1) == WeekDaySchedule(
        1, 1, DaysMask.MONDAY, time(9, 30), time(17, 45)
    )
    rig.lock.clear_week_day_schedule(1, 1)
    assert keypad_error(rig.lock.get_week_day_schedule, 1, 1) is KeypadStatus.NOT_FOUND


def test_clear_all_week_day_schedules_of_a_user(rig: Rig) -> None:
    rig.lock.set_week_day_schedule(1, 1, DaysMask.MONDAY, time(9), time(10))
    rig.lock.set_week_day_schedule(2, 1, DaysMask.TUESDAY, time(9), time(10))

    rig.lock.clear_week_day_schedule(CLEAR_ALL_SCHEDULES, 1)

    for index in (1, 2):
        status = keypad_error(rig.lock.get_week_day_schedule, index, 1)
        assert status is KeypadStatus.NOT_FOUND


@pytest.mark.parametrize(
    ("index", "user_index", "days", "start", "end"),
    [
        (0, 1, DaysMask.MONDAY, time(9), time(10)),  # index 0
        (5, 1, DaysMask.MONDAY, time(9), time(10)),  # past NumberOfWeekDaySchedules...
        (1, 0, DaysMask.MONDAY, time(9), time(10)),  # user index 0
        (1, 1, DaysMask(0), time(9), time(10)),  # no day
        (1, 1, DaysMask(0x80), time(9), time(10)),  # the reserved bit alone
        (1, 1, DaysMask.MONDAY | DaysMask(0x80), time(9), time(10)),  # with a day
        (1, 1, DaysMask.MONDAY, time(15), time(10)),  # start after end
        (1, 1, DaysMask.MONDAY, time(10), time(10)),  # start equal to end
        (1, 1, DaysMask.MONDAY, time(9, 0, 30), time(10)),  # Matter has minutes only
    ],
)
def test_week_day_schedule_validation(
    rig: Rig, index: int, user_index: int, days: DaysMask, start: time, end: time
) -> None:
    status = keypad_error(rig.lock.set_week_day_schedule, index, user_index, days, start, end)
    assert status is KeypadStatus.INVALID_COMMAND


def test_a_schedule_for_a_missing_user_fails(rig: Rig) -> None:
    status = keypad_error(rig.lock.set_week_day_schedule, 1, 2, DaysMask.MONDAY, time(9), time(10))
    assert status is KeypadStatus.FAILURE


def test_a_missing_schedule_is_not_found(rig: Rig) -> None:
    assert keypad_error(rig.lock.get_week_day_schedule, 2, 1) is KeypadStatus.NOT_FOUND
    assert keypad_error(rig.lock.get_year_day_schedule, 2, 1) is KeypadStatus.NOT_FOUND


def test_year_day_schedule_set_get_and_validation(rig: Rig) -> None:
    rig.lock.set_year_day_schedule(1, 1, 1000, 2000)

    assert rig.lock.get_year_day_schedule(1, 1) == YearDaySchedule(1, 1, 1000, 2000)
    for start, end in [(2000, 1000), (1000, 1000), (-1, 10)]:
        status = keypad_error(rig.lock.set_year_day_schedule, 2, 1, start, end)
        assert status is KeypadStatus.INVALID_COMMAND
    assert keypad_error(rig.lock.get_year_day_schedule, 0, 1) is KeypadStatus.INVALID_COMMAND


def week_day_user(rig: Rig, start: time, end: time, days: DaysMask = WORKDAYS) -> None:
    rig.lock.set_user(1, user_type=UserType.WEEK_DAY_SCHEDULE, modify=True)
    rig.lock.set_week_day_schedule(1, 1, days, start, end)


# Windows include both ends to the second, as the SDK's lock app evaluates them.
@pytest.mark.parametrize(
    ("clock", "allowed"),
    [
        ("08:59:00", False),  # one minute before the start
        ("08:59:59", False),
        ("09:00:00", True),  # exactly at the start
        ("16:59:00", True),  # one minute before the end
        ("17:00:00", True),  # exactly at the end
        ("17:00:01", False),
        ("17:01:00", False),  # one minute after the end
    ],
)
def test_week_day_schedule_boundaries(make_rig: MakeRig, clock: str, allowed: bool) -> None:
    rig = make_rig(datetime.fromisoformat(f"2025-06-02T{clock}+00:00"))  # a Monday
    rig.lock.set_pin(1, PIN, user_index=None)
    week_day_user(rig, time(9), time(17))

    expected = let_in(1) if allowed else refused(OperationError.RESTRICTED, 1)
    assert rig.type(PIN) == [expected]


def test_week_day_schedule_keeps_to_its_days(make_rig: MakeRig) -> None:
    rig = make_rig(datetime(2025, 6, 7, 12, 0, tzinfo=UTC))  # a Saturday
    rig.lock.set_pin(1, PIN, user_index=None)
    week_day_user(rig, time(9), time(17))

    assert rig.type(PIN) == [refused(OperationError.RESTRICTED, 1)]


def test_a_schedule_user_without_schedules_never_gets_in(rig: Rig) -> None:
    for user_type in (UserType.WEEK_DAY_SCHEDULE, UserType.YEAR_DAY_SCHEDULE):
        rig.lock.set_user(1, user_type=user_type, modify=True)
        assert rig.type(PIN) == [refused(OperationError.RESTRICTED, 1)]


@pytest.mark.parametrize(
    ("offset", "allowed"), [(-1, False), (0, True), (3600, True), (3601, False)]
)
def test_year_day_schedule_boundaries(make_rig: MakeRig, offset: int, allowed: bool) -> None:
    start = MONDAY_NOON
    rig = make_rig(start + timedelta(seconds=offset))
    rig.lock.set_user(1, user_type=UserType.YEAR_DAY_SCHEDULE)
    rig.lock.set_pin(1, PIN, user_index=1)
    local_start = local_epoch_seconds(start)
    rig.lock.set_year_day_schedule(1, 1, local_start, local_start + 3600)

    expected = let_in(1) if allowed else refused(OperationError.RESTRICTED, 1)
    assert rig.type(PIN) == [expected]


def test_local_epoch_seconds_count_from_2000_on_the_wall_clock() -> None:
    assert local_epoch_seconds(datetime(2000, 1, 1)) == 0
    assert local_epoch_seconds(datetime(2000, 1, 2, 0, 0, 1, tzinfo=BERLIN)) == 86_401


def test_schedule_restricted_user_needs_both_the_dates_and_the_hours(make_rig: MakeRig) -> None:
    rig = make_rig(datetime(2025, 3, 4, 10, 0, tzinfo=UTC))  # a Tuesday in range
    rig.lock.set_user(1, user_type=UserType.SCHEDULE_RESTRICTED)
    rig.lock.set_pin(1, PIN, user_index=1)
    rig.lock.set_week_day_schedule(1, 1, DaysMask.TUESDAY, time(9), time(12))
    spring = (datetime(2025, 3, 1), datetime(2025, 6, 30, 23, 59))
    rig.lock.set_year_day_schedule(1, 1, *map(local_epoch_seconds, spring))
    restricted = [refused(OperationError.RESTRICTED, 1)]

    assert rig.type(PIN) == [let_in(1)]
    rig.go_to(datetime(2025, 3, 5, 10, 0, tzinfo=UTC))  # Wednesday: outside the hours
    assert rig.type(PIN) == restricted
    rig.go_to(datetime(2025, 7, 1, 10, 0, tzinfo=UTC))  # Tuesday: outside the dates
    assert rig.type(PIN) == restricted


# --- daylight saving time: schedules follow the home's wall clock ------------------------


def test_week_day_schedule_follows_the_wall_clock_across_dst(make_rig: MakeRig) -> None:
    # New York moves from EST (UTC-5) to EDT (UTC-4) on Sunday 2025-03-09.
    rig = make_rig(datetime(2025, 3, 7, 14, 30, tzinfo=UTC), time_zone=NEW_YORK)  # Fri 09:30
    rig.lock.set_pin(1, PIN, user_index=None)
    week_day_user(rig, time(9), time(10))
    restricted = [refused(OperationError.RESTRICTED, 1)]

    assert rig.type(PIN) == [let_in(1)]
    rig.go_to(datetime(2025, 3, 10, 13, 30, tzinfo=UTC))  # Monday 09:30 EDT
    assert rig.type(PIN) == [let_in(1)]
    rig.go_to(datetime(2025, 3, 10, 14, 30, tzinfo=UTC))  # Monday 10:30 EDT
    assert rig.type(PIN) == restricted


def test_year_day_schedule_over_the_spring_forward_night(make_rig: MakeRig) -> None:
    # Berlin skips 02:00-03:00 on 2025-03-30: local 01:00-04:00 is two real hours.
    rig = make_rig(datetime(2025, 3, 29, 23, 59, 59, tzinfo=UTC), time_zone=BERLIN)
    rig.lock.set_user(1, user_type=UserType.YEAR_DAY_SCHEDULE)
    rig.lock.set_pin(1, PIN, user_index=1)
    night = (datetime(2025, 3, 30, 1, 0), datetime(2025, 3, 30, 4, 0))
    rig.lock.set_year_day_schedule(1, 1, *map(local_epoch_seconds, night))
    restricted = [refused(OperationError.RESTRICTED, 1)]

    assert rig.type(PIN) == restricted  # 00:59:59 CET
    rig.go_to(datetime(2025, 3, 30, 0, 0, tzinfo=UTC))  # 01:00 CET
    assert rig.type(PIN) == [let_in(1)]
    rig.go_to(datetime(2025, 3, 30, 2, 0, tzinfo=UTC))  # 04:00 CEST
    assert rig.type(PIN) == [let_in(1)]
    rig.go_to(datetime(2025, 3, 30, 2, 0, 1, tzinfo=UTC))  # 04:00:01 CEST
    assert rig.type(PIN) == restricted


def test_year_day_window_ending_in_the_repeated_hour_reopens(make_rig: MakeRig) -> None:
    # Berlin reads 02:00-03:00 twice on 2025-10-26 (CEST, then CET): a local-time window
    # ending at 02:30 covers both readings. Documented in hub.keypad.
    rig = make_rig(datetime(2025, 10, 26, 0, 15, tzinfo=UTC), time_zone=BERLIN)
    rig.lock.set_user(1, user_type=UserType.YEAR_DAY_SCHEDULE)
    rig.lock.set_pin(1, PIN, user_index=1)
    window = (datetime(2025, 10, 26, 0, 0), datetime(2025, 10, 26, 2, 30))
    rig.lock.set_year_day_schedule(1, 1, *map(local_epoch_seconds, window))

    assert rig.type(PIN) == [let_in(1)]  # 02:15 CEST
    rig.go_to(datetime(2025, 10, 26, 0, 45, tzinfo=UTC))  # 02:45 CEST
    assert rig.type(PIN) == [refused(OperationError.RESTRICTED, 1)]
    rig.go_to(datetime(2025, 10, 26, 1, 15, tzinfo=UTC))  # 02:15 CET
    assert rig.type(PIN) == [let_in(1)]


# --- codes never reach the logs -----------------------------------------------------------


def test_no_pin_appears_in_logs_errors_or_reprs(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret, other, wrong = "48151623", "27182818", "31415926"
    rig = make_rig()
    texts: list[str] = []

    rig.lock.set_pin(1, secret, user_index=None)
    rig.lock.set_pin(2, other, user_index=1)
    for pin in (secret, wrong, wrong, wrong, wrong, wrong, secret):
        rig.type(pin)
    for index, pin in [(3, secret), (1, wrong), (3, secret + "9")]:  # duplicate, taken, long
        with pytest.raises(KeypadError) as caught:
            rig.lock.set_pin(index, pin, user_index=1)
        texts.append(str(caught.value))
    texts += [repr(rig.lock.get_user(1)), repr(rig.lock.get_pin(1)), repr(rig.events)]
    rig.lock.clear_pin(CLEAR_ALL)

    assert caplog.records  # the keypad did log, by index
    for pin in (secret, other, wrong):
        assert pin not in caplog.text
        assert not any(pin in text for text in texts)
