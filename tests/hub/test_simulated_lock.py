"""The simulated lock obeys the Matter Door Lock semantics the hub relies on."""

from __future__ import annotations

import threading

import pytest

from doorstep.hub.drivers.simulated import ManualScheduler, SimulatedLock, ThreadScheduler
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    DoorState,
    DoorStateChange,
    LockDriver,
    LockError,
    LockEvent,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)

REMOTE = OperationSource.REMOTE
UNLOCKED_REMOTELY = LockOperation(LockOperationType.UNLOCK, REMOTE)
LOCKED_REMOTELY = LockOperation(LockOperationType.LOCK, REMOTE)
AUTO_RELOCKED = LockOperation(LockOperationType.LOCK, OperationSource.AUTO)
JAM_ALARM = DoorLockAlarm(AlarmCode.LOCK_JAMMED)


@pytest.fixture
def clock() -> ManualScheduler:
    return ManualScheduler()


def make_lock(
    clock: ManualScheduler,
    events: list[LockEvent],
    *,
    motor_seconds: float = 0.0,
    auto_relock_seconds: float | None = None,
) -> SimulatedLock:
    lock = SimulatedLock(
        scheduler=clock, motor_seconds=motor_seconds, auto_relock_seconds=auto_relock_seconds
    )
    lock.subscribe(events.append)
    return lock


def test_starts_locked_and_closed(clock: ManualScheduler) -> None:
    status = SimulatedLock(scheduler=clock).status()

    assert status.lock_state is LockState.LOCKED
    assert status.door_state is DoorState.CLOSED
    assert status.battery_percent == 100
    assert not status.jammed
    assert status.online
    assert status.secure


def test_is_a_lock_driver(clock: ManualScheduler) -> None:
    driver: LockDriver = SimulatedLock(scheduler=clock)
    driver.close()
    with pytest.raises(LockError):
        driver.unlock(REMOTE)


def test_unlock_without_motor_time_completes_before_returning(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events)

    lock.unlock(REMOTE)

    assert lock.status().lock_state is LockState.UNLOCKED
    assert events == [UNLOCKED_REMOTELY]
    assert (lock.unlock_calls, lock.actuations) == (1, 1)


def test_unlock_waits_for_the_motor(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events, motor_seconds=1.0)

    lock.unlock(REMOTE)
    clock.advance(0.99)
    assert lock.status().lock_state is LockState.LOCKED
    assert events == []

    clock.advance(0.01)
    assert lock.status().lock_state is LockState.UNLOCKED
    assert events == [UNLOCKED_REMOTELY]


def test_request_while_the_motor_runs_is_refused(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events, motor_seconds=1.0)

    lock.unlock(REMOTE)
    lock.lock(REMOTE)
    clock.advance(1.0)

    busy = LockOperationError(LockOperationType.LOCK, REMOTE, OperationError.UNSPECIFIED)
    assert events == [busy, UNLOCKED_REMOTELY]
    assert lock.actuations == 1


def test_auto_relocks_when_the_door_is_closed(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events, motor_seconds=1.0, auto_relock_seconds=30.0)

    lock.unlock(REMOTE)
    clock.advance(1.0 + 30.0)  # unlocked at t=1; the relock motor starts at t=31
    assert lock.status().lock_state is LockState.UNLOCKED

    clock.advance(1.0)
    assert lock.status().secure
    assert events == [UNLOCKED_REMOTELY, AUTO_RELOCKED]
    assert lock.actuations == 2


def test_auto_relock_waits_for_an_open_door_to_close(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events, auto_relock_seconds=30.0)

    lock.unlock(REMOTE)
    lock.open_door()
    clock.advance(120.0)
    assert lock.status().lock_state is LockState.UNLOCKED

    lock.close_door()

    assert lock.status().secure
    assert events == [
        UNLOCKED_REMOTELY,
        DoorStateChange(DoorState.OPEN),
        DoorStateChange(DoorState.CLOSED),
        AUTO_RELOCKED,
    ]


def test_lock_before_auto_relock_cancels_it(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events, auto_relock_seconds=30.0)

    lock.unlock(REMOTE)
    lock.lock(REMOTE)
    clock.advance(60.0)

    assert events == [UNLOCKED_REMOTELY, LOCKED_REMOTELY]
    assert clock.pending == 0


def test_lock_is_refused_while_the_door_is_open(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events)
    lock.unlock(REMOTE)
    lock.open_door()
    events.clear()

    lock.lock(REMOTE)

    refused = LockOperationError(LockOperationType.LOCK, REMOTE, OperationError.UNSPECIFIED)
    assert events == [refused]
    assert lock.status().lock_state is LockState.UNLOCKED
    assert (lock.lock_calls, lock.actuations) == (1, 1)


def test_jam_on_lock_leaves_the_bolt_not_fully_locked(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events)
    lock.unlock(REMOTE)
    lock.inject_jam(True)
    events.clear()

    lock.lock(REMOTE)

    status = lock.status()
    assert status.lock_state is LockState.NOT_FULLY_LOCKED
    assert status.jammed
    assert not status.secure
    failed = LockOperationError(LockOperationType.LOCK, REMOTE, OperationError.UNSPECIFIED)
    assert events == [JAM_ALARM, failed]
    assert lock.actuations == 2


def test_jam_on_unlock_keeps_the_door_shut_and_reports(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events, auto_relock_seconds=30.0)
    lock.inject_jam(True)

    lock.unlock(REMOTE)

    assert lock.status().lock_state is LockState.NOT_FULLY_LOCKED
    failed = LockOperationError(LockOperationType.UNLOCK, REMOTE, OperationError.UNSPECIFIED)
    assert events == [JAM_ALARM, failed]
    assert clock.pending == 0  # nothing to relock


def test_a_movement_after_the_jam_clears_reports_healthy(clock: ManualScheduler) -> None:
    lock = SimulatedLock(scheduler=clock)
    lock.inject_jam(True)
    lock.unlock(REMOTE)
    lock.inject_jam(False)

    lock.lock(REMOTE)

    assert not lock.status().jammed
    assert lock.status().secure


def test_locked_with_the_door_open_is_not_secure(clock: ManualScheduler) -> None:
    lock = SimulatedLock(scheduler=clock)
    lock.unlock(REMOTE)
    lock.open_door()

    lock.manual_lock()  # the thumb-turn throws the bolt regardless of the door

    status = lock.status()
    assert status.lock_state is LockState.LOCKED
    assert status.door_state is DoorState.OPEN
    assert not status.secure


def test_offline_raises_and_never_reaches_the_actuator(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events)
    lock.set_online(False)

    with pytest.raises(LockError):
        lock.unlock(REMOTE)
    with pytest.raises(LockError):
        lock.lock(REMOTE)

    assert not lock.status().online
    assert lock.actuations == 0
    assert lock.status().lock_state is LockState.LOCKED
    assert events == []


def test_a_lost_door_sensor_reads_unknown_and_reports_the_door_when_found(
    clock: ManualScheduler,
) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events)

    lock.lose_door_sensor(True)
    lock.open_door()  # the door moves; nobody hears of it
    lock.lock(REMOTE)  # still not thrown into the open door

    assert lock.status().door_state is DoorState.UNSPECIFIED_ERROR
    assert not lock.status().secure
    lock.lose_door_sensor(False)
    assert lock.status().door_state is DoorState.OPEN
    assert events == [
        DoorStateChange(DoorState.UNSPECIFIED_ERROR),
        LockOperationError(LockOperationType.LOCK, REMOTE, OperationError.UNSPECIFIED),
        DoorStateChange(DoorState.OPEN),
    ]


def test_flat_battery_refuses_to_move(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events)
    lock.set_battery(0)

    lock.unlock(REMOTE)

    flat = LockOperationError(LockOperationType.UNLOCK, REMOTE, OperationError.INSUFFICIENT_BATTERY)
    assert events == [flat]
    assert lock.status().lock_state is LockState.LOCKED
    assert lock.actuations == 0
    with pytest.raises(ValueError):
        lock.set_battery(101)


def test_opening_a_locked_door_is_forced_entry(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events)

    lock.open_door()

    assert lock.status().door_state is DoorState.OPEN
    assert events == [DoorStateChange(DoorState.OPEN), DoorLockAlarm(AlarmCode.DOOR_FORCED_OPEN)]


def test_opening_an_unlocked_door_raises_no_alarm(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events)
    lock.manual_unlock()

    lock.open_door()
    lock.open_door()  # already open: nothing new to report

    assert events == [
        LockOperation(LockOperationType.UNLOCK, OperationSource.MANUAL),
        DoorStateChange(DoorState.OPEN),
    ]


def test_only_unlock_calls_count_as_unlock_calls(clock: ManualScheduler) -> None:
    lock = SimulatedLock(scheduler=clock, auto_relock_seconds=5.0)

    lock.manual_unlock()
    clock.advance(5.0)
    lock.lock(REMOTE)

    assert lock.unlock_calls == 0
    assert lock.actuations == 2  # the auto-relock and the remote lock


def test_closed_driver_stops_its_timers(clock: ManualScheduler) -> None:
    events: list[LockEvent] = []
    lock = make_lock(clock, events, motor_seconds=1.0)
    lock.unlock(REMOTE)

    lock.close()
    clock.advance(10.0)

    assert events == []
    assert lock.status().lock_state is LockState.LOCKED


def test_a_failing_subscriber_does_not_silence_the_others(
    clock: ManualScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: LockEvent) -> None:
        raise RuntimeError("subscriber bug")

    events: list[LockEvent] = []
    lock = SimulatedLock(scheduler=clock)
    lock.subscribe(broken)
    lock.subscribe(events.append)

    lock.unlock(REMOTE)

    assert events == [UNLOCKED_REMOTELY]
    assert "subscriber failed" in caplog.text


def test_subscriber_may_act_on_the_lock_and_events_stay_in_order(
    clock: ManualScheduler,
) -> None:
    events: list[LockEvent] = []
    lock = SimulatedLock(scheduler=clock)

    def relock_on_unlock(event: LockEvent) -> None:
        if event == UNLOCKED_REMOTELY:
            lock.lock(REMOTE)

    lock.subscribe(relock_on_unlock)
    lock.subscribe(events.append)

    lock.unlock(REMOTE)

    assert events == [UNLOCKED_REMOTELY, LOCKED_REMOTELY]
    assert lock.status().secure


def test_callbacks_may_read_status_from_the_timer_thread() -> None:
    lock = SimulatedLock(scheduler=ThreadScheduler(), motor_seconds=0.01)
    seen: list[LockState] = []
    done = threading.Event()

    def on_event(event: LockEvent) -> None:
        seen.append(lock.status().lock_state)
        done.set()

    lock.subscribe(on_event)
    lock.unlock(REMOTE)

    assert done.wait(timeout=5.0)
    assert seen == [LockState.UNLOCKED]
    lock.close()


def test_a_movement_outlives_the_hub_process_that_asked_for_it(clock: ManualScheduler) -> None:
    before: list[LockEvent] = []
    lock = make_lock(clock, before, motor_seconds=1.0)
    lock.unlock(REMOTE)

    lock.hub_process_died()
    after: list[LockEvent] = []
    lock.subscribe(after.append)  # the next hub process
    assert lock.status().lock_state is LockState.LOCKED  # still its word from before
    clock.advance(1.0)

    assert lock.status().lock_state is LockState.UNLOCKED
    assert (before, after) == ([], [UNLOCKED_REMOTELY])
