"""A simulated smart deadbolt with a door position sensor, and the clocks that drive it.

`SimulatedLock` behaves like a Matter Door Lock seen from the hub: `unlock()`/`lock()`
request a motor movement and return; the outcome arrives as events after
`motor_seconds`. It can jam, run flat, go offline, lose its door sensor
(`lose_door_sensor`), auto-relock, and be handled by a person (`open_door`,
`close_door`, thumb-turn `manual_lock`/`manual_unlock`), which is how tests and the demo
play the courier's hands. It outlives a hub process that dies
(`hub_process_died`): a movement under way finishes for the next one to hear.

It has a keypad too (`hub.keypad.KeypadLock`): users, PIN codes, week-day and year-day
schedules and the wrong-code lockout, kept in a `KeypadStore`. `keypad_entry(pin)` plays
a person typing a code: a code that lets them in now unlocks with LockOperation(UNLOCK,
KEYPAD, user_index); any other yields LockOperationError(UNLOCK, KEYPAD, ...), and the
code that reaches WrongCodeEntryLimit also raises DoorLockAlarm(WRONG_CODE_ENTRY_LIMIT).
The lockout ends UserCodeTemporaryDisableTime seconds later, on the Scheduler. While it
lasts each code is refused as RESTRICTED: Matter only says the keypad is disabled, but
the hub wants every keypad attempt on record, so each is still reported. The keypad is
local, so it works while the radio is down; remote `unlock()`/`lock()` carry no PIN and
ignore the lockout. Schedules are judged on the home's wall clock: `clock` (Unix
seconds) read in `time_zone` (default UTC). Codes are never logged, only indices.

Time comes from a `Scheduler`: `ThreadScheduler` for real runs, `ManualScheduler` for
tests that move the clock by hand instead of sleeping. With `motor_seconds=0` a movement
completes inside the call, its events delivered before the call returns (the benchmarks'
fast path).

Thread safety: one mutex guards the state; events are queued under it and delivered
outside it, in the order they happened, by whichever thread is not already delivering.
So a subscriber may call `status()`, `lock()` or `unlock()` without deadlock; events
caused by such a nested call are delivered right after the current one.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, tzinfo

from doorstep.hub.keypad import (
    DaysMask,
    KeypadAttributes,
    KeypadLimits,
    KeypadStore,
    KeypadVerdict,
    PinCredential,
    PinSet,
    User,
    UserStatus,
    UserType,
    WeekDaySchedule,
    YearDaySchedule,
)
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    DoorState,
    DoorStateChange,
    LockError,
    LockEvent,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    LockStatus,
    OperationError,
    OperationSource,
)
from doorstep.hub.scheduling import Cancellable, ManualScheduler, Scheduler, ThreadScheduler

log = logging.getLogger(__name__)

# The clocks live in `hub.scheduling`; imported here too, where tests have always found them.
__all__ = ["Cancellable", "ManualScheduler", "Scheduler", "SimulatedLock", "ThreadScheduler"]

_DOOR_OPEN_STATES = frozenset({DoorState.OPEN, DoorState.FORCED_OPEN, DoorState.AJAR})


@dataclass(frozen=True, eq=False)
class _Motion:
    """One motor movement; compared by identity so a stale timer can tell it is stale."""

    operation: LockOperationType
    source: OperationSource
    user_index: int | None = None


class SimulatedLock:
    """A deadbolt, door sensor and keypad in memory; a `LockDriver` and a `KeypadLock`.

    `actuations` counts motor movements started (remote, auto-relock, jammed ones too);
    `unlock_calls`/`lock_calls` count calls to `unlock()`/`lock()`, refused or not.
    """

    def __init__(
        self,
        *,
        scheduler: Scheduler | None = None,
        motor_seconds: float = 0.0,
        auto_relock_seconds: float | None = None,
        battery_percent: int = 100,
        clock: Callable[[], float] = _time.time,
        time_zone: tzinfo = UTC,
        keypad_limits: KeypadLimits | None = None,
    ) -> None:
        if motor_seconds < 0:
            raise ValueError("motor_seconds must be >= 0")
        if auto_relock_seconds is not None and auto_relock_seconds <= 0:
            raise ValueError("auto_relock_seconds must be > 0 or None")
        _check_percent(battery_percent)
        self._scheduler = scheduler if scheduler is not None else ThreadScheduler()
        self._motor_seconds = motor_seconds
        self._auto_relock_seconds = auto_relock_seconds
        self._clock = clock
        self._time_zone = time_zone
        self._keypad = KeypadStore(keypad_limits)
        self._lockout_timer: Cancellable | None = None
        self._mutex = threading.Lock()
        self._lock_state = LockState.LOCKED
        self._door_state = DoorState.CLOSED  # where the door is; `status` may not know
        self._sensor_lost = False
        self._battery_percent = battery_percent
        self._jam_injected = False
        self._jammed = False
        self._online = True
        self._closed = False
        self._motion: _Motion | None = None
        self._motion_timer: Cancellable | None = None
        self._relock_timer: Cancellable | None = None
        self._relock_generation = 0
        self._relock_on_close = False
        self._subscribers: list[Callable[[LockEvent], None]] = []
        self._outbox: deque[LockEvent] = deque()
        self._delivering = False
        self.actuations = 0
        self.unlock_calls = 0
        self.lock_calls = 0

    # --- LockDriver -------------------------------------------------------------------

    def status(self) -> LockStatus:
        with self._mutex:
            return LockStatus(
                lock_state=self._lock_state,
                door_state=DoorState.UNSPECIFIED_ERROR if self._sensor_lost else self._door_state,
                battery_percent=self._battery_percent,
                jammed=self._jammed,
                online=self._online,
            )

    def subscribe(self, callback: Callable[[LockEvent], None]) -> None:
        with self._mutex:
            self._subscribers.append(callback)

    def unlock(self, source: OperationSource) -> None:
        with self._mutex:
            self.unlock_calls += 1
            self._check_reachable()
            self._start_motion(LockOperationType.UNLOCK, source)
        self._deliver()

    def lock(self, source: OperationSource) -> None:
        with self._mutex:
            self.lock_calls += 1
            self._check_reachable()
            if self._door_state in _DOOR_OPEN_STATES:
                # A real deadbolt would throw into the open door and then fail to enter
                # the strike. Like smart locks with a door sensor, we refuse instead, so
                # "locked" is never reported for a bolt that cannot be holding the door.
                self._refuse(LockOperationType.LOCK, source, OperationError.UNSPECIFIED)
            else:
                self._start_motion(LockOperationType.LOCK, source)
        self._deliver()

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            if self._motion_timer is not None:
                self._motion_timer.cancel()
            self._motion = None
            self._motion_timer = None
            self._cancel_relock()
            if self._lockout_timer is not None:
                self._lockout_timer.cancel()
            self._subscribers.clear()
            self._outbox.clear()

    # --- KeypadLock (hub.keypad): what the hub may program over the radio -----------------

    def keypad_attributes(self) -> KeypadAttributes:
        with self._keypad_admin() as keypad:
            return keypad.keypad_attributes()

    def set_wrong_code_entry_limit(self, limit: int) -> None:
        with self._keypad_admin() as keypad:
            keypad.set_wrong_code_entry_limit(limit)

    def set_user_code_temporary_disable_time(self, seconds: int) -> None:
        with self._keypad_admin() as keypad:
            keypad.set_user_code_temporary_disable_time(seconds)

    def set_user(
        self,
        user_index: int,
        *,
        name: str | None = None,
        user_type: UserType | None = None,
        status: UserStatus | None = None,
        modify: bool = False,
    ) -> None:
        with self._keypad_admin() as keypad:
            keypad.set_user(
                user_index, name=name, user_type=user_type, status=status, modify=modify
            )

    def get_user(self, user_index: int) -> User | None:
        with self._keypad_admin() as keypad:
            return keypad.get_user(user_index)

    def clear_user(self, user_index: int) -> None:
        with self._keypad_admin() as keypad:
            keypad.clear_user(user_index)

    def set_pin(
        self, credential_index: int, pin: str, *, user_index: int | None, modify: bool = False
    ) -> PinSet:
        with self._keypad_admin() as keypad:
            pin_set = keypad.set_pin(credential_index, pin, user_index=user_index, modify=modify)
        log.info("PIN slot %d set for user %d", credential_index, pin_set.user_index)
        return pin_set

    def get_pin(self, credential_index: int) -> PinCredential | None:
        with self._keypad_admin() as keypad:
            return keypad.get_pin(credential_index)

    def clear_pin(self, credential_index: int) -> None:
        with self._keypad_admin() as keypad:
            keypad.clear_pin(credential_index)
        log.info("PIN slot %d cleared", credential_index)

    def set_week_day_schedule(
        self, index: int, user_index: int, days: DaysMask, start: time, end: time
    ) -> None:
        with self._keypad_admin() as keypad:
            keypad.set_week_day_schedule(index, user_index, days, start, end)

    def get_week_day_schedule(self, index: int, user_index: int) -> WeekDaySchedule:
        with self._keypad_admin() as keypad:
            return keypad.get_week_day_schedule(index, user_index)

    def clear_week_day_schedule(self, index: int, user_index: int) -> None:
        with self._keypad_admin() as keypad:
            keypad.clear_week_day_schedule(index, user_index)

    def set_year_day_schedule(
        self, index: int, user_index: int, local_start: int, local_end: int
    ) -> None:
        with self._keypad_admin() as keypad:
            keypad.set_year_day_schedule(index, user_index, local_start, local_end)

    def get_year_day_schedule(self, index: int, user_index: int) -> YearDaySchedule:
        with self._keypad_admin() as keypad:
            return keypad.get_year_day_schedule(index, user_index)

    def clear_year_day_schedule(self, index: int, user_index: int) -> None:
        with self._keypad_admin() as keypad:
            keypad.clear_year_day_schedule(index, user_index)

    @contextmanager
    def _keypad_admin(self) -> Iterator[KeypadStore]:
        with self._mutex:
            self._check_reachable()
            yield self._keypad

    # --- the physical world: the person at the door, and fault injection -------------

    def keypad_entry(self, pin: str) -> KeypadVerdict:
        """A person types `pin` on the keypad: unlock if it lets them in now (module doc).

        Returns the lock's verdict. Works while offline (the keypad is on the lock);
        raises LockError once closed.
        """
        with self._mutex:
            if self._closed:
                raise LockError("lock driver is closed")
            verdict = self._keypad.enter_code(pin, self._local_now())
            self._act_on_keypad(verdict)
        self._deliver()
        return verdict

    def set_time_zone(self, time_zone: tzinfo) -> None:
        """The zone of the lock's wall clock, which schedules are judged on (Matter's Time
        Synchronization cluster sets it on a real lock)."""
        with self._mutex:
            self._time_zone = time_zone

    @property
    def keypad_locked_out(self) -> bool:
        with self._mutex:
            return self._keypad.locked_out

    def open_door(self) -> None:
        with self._mutex:
            if self._door_state in _DOOR_OPEN_STATES:
                return
            self._door_state = DoorState.OPEN
            self._report_door()
            if self._lock_state == LockState.LOCKED and not self._sensor_lost:
                self._outbox.append(DoorLockAlarm(AlarmCode.DOOR_FORCED_OPEN))
        self._deliver()

    def close_door(self) -> None:
        with self._mutex:
            if self._door_state == DoorState.CLOSED:
                return
            self._door_state = DoorState.CLOSED
            self._report_door()
            if self._relock_on_close:
                self._auto_relock()
        self._deliver()

    def manual_unlock(self) -> None:
        """Thumb-turn to unlocked. A hand frees a bolt the motor could not (clears a jam)."""
        with self._mutex:
            if self._lock_state != LockState.UNLOCKED:
                self._jammed = False
                self._become_unlocked(OperationSource.MANUAL)
        self._deliver()

    def manual_lock(self) -> None:
        """Thumb-turn to locked. Works with the door open: a person may choose to."""
        with self._mutex:
            if self._lock_state != LockState.LOCKED:
                self._jammed = False
                self._become_locked(OperationSource.MANUAL)
        self._deliver()

    def lose_door_sensor(self, lost: bool) -> None:
        """While lost, the door position sensor does not know where the door is: status
        reads DoorUnspecifiedError (as Zigbee2MQTT's sleepy contact sensor does until it
        first reports after a restart), and the door's movements are not reported, nor
        a forced opening, which only the sensor can tell. The door still opens and
        shuts, and the lock still refuses to throw its bolt into an open door. Found
        again, the sensor reports where the door is."""
        with self._mutex:
            if lost == self._sensor_lost:
                return
            self._sensor_lost = lost
            self._outbox.append(
                DoorStateChange(DoorState.UNSPECIFIED_ERROR if lost else self._door_state)
            )
        self._deliver()

    def hub_process_died(self) -> None:
        """The hub's process died (a crash, a power cut of the hub alone): what it had
        subscribed hears nothing more, and it cancels nothing. The bolt, the door and a
        movement under way carry on, as a real lock's motor does not stop with the hub;
        the next hub process subscribes afresh. (`close()` is the hub letting go in
        order, and stops the motor with the driver.)"""
        with self._mutex:
            self._subscribers.clear()

    def inject_jam(self, on: bool) -> None:
        """While on, every motor movement stalls half-way."""
        with self._mutex:
            self._jam_injected = on

    def set_online(self, on: bool) -> None:
        """Offline: the radio link is down, so remote lock/unlock raise LockError."""
        with self._mutex:
            self._online = on

    def set_battery(self, percent: int) -> None:
        """At 0 % the motor cannot move: requests fail with INSUFFICIENT_BATTERY."""
        _check_percent(percent)
        with self._mutex:
            self._battery_percent = percent

    # --- motor and auto-relock (called with the mutex held) ----------------------------

    def _report_door(self) -> None:
        if not self._sensor_lost:
            self._outbox.append(DoorStateChange(self._door_state))

    def _check_reachable(self) -> None:
        if self._closed:
            raise LockError("lock driver is closed")
        if not self._online:
            raise LockError("lock is offline")

    def _refuse(
        self,
        operation: LockOperationType,
        source: OperationSource,
        error: OperationError,
        user_index: int | None = None,
    ) -> None:
        self._outbox.append(LockOperationError(operation, source, error, user_index))

    def _start_motion(
        self, operation: LockOperationType, source: OperationSource, user_index: int | None = None
    ) -> bool:
        """Start the motor, or refuse with an event; say whether it started."""
        if self._motion is not None:
            self._refuse(operation, source, OperationError.UNSPECIFIED, user_index)  # busy
            return False
        if self._battery_percent == 0:
            self._refuse(operation, source, OperationError.INSUFFICIENT_BATTERY, user_index)
            return False
        self.actuations += 1
        motion = _Motion(operation, source, user_index)
        if self._motor_seconds == 0:
            self._finish_motion(motion)
            return True
        self._motion = motion
        self._motion_timer = self._scheduler.call_later(
            self._motor_seconds, lambda: self._on_motion_done(motion)
        )
        return True

    def _on_motion_done(self, motion: _Motion) -> None:
        with self._mutex:
            if self._motion is not motion:
                return  # cancelled by close() after the timer had already fired
            self._motion = None
            self._motion_timer = None
            self._finish_motion(motion)
        self._deliver()

    def _finish_motion(self, motion: _Motion) -> None:
        if self._jam_injected:
            self._jam(motion)
        elif motion.operation == LockOperationType.UNLOCK:
            self._jammed = False
            self._become_unlocked(motion.source, motion.user_index)
        else:
            self._jammed = False
            self._become_locked(motion.source)

    def _jam(self, motion: _Motion) -> None:
        self._lock_state = LockState.NOT_FULLY_LOCKED
        self._jammed = True
        self._cancel_relock()
        self._outbox.append(DoorLockAlarm(AlarmCode.LOCK_JAMMED))
        self._refuse(motion.operation, motion.source, OperationError.UNSPECIFIED, motion.user_index)

    def _become_unlocked(self, source: OperationSource, user_index: int | None = None) -> None:
        self._lock_state = LockState.UNLOCKED
        self._outbox.append(LockOperation(LockOperationType.UNLOCK, source, user_index))
        self._arm_relock()

    def _become_locked(self, source: OperationSource) -> None:
        self._lock_state = LockState.LOCKED
        self._cancel_relock()
        self._outbox.append(LockOperation(LockOperationType.LOCK, source))

    def _arm_relock(self) -> None:
        self._cancel_relock()
        if self._auto_relock_seconds is None:
            return
        generation = self._relock_generation
        self._relock_timer = self._scheduler.call_later(
            self._auto_relock_seconds, lambda: self._on_relock_due(generation)
        )

    def _cancel_relock(self) -> None:
        # The generation makes a timer that fired while we were cancelling it harmless.
        self._relock_generation += 1
        self._relock_on_close = False
        if self._relock_timer is not None:
            self._relock_timer.cancel()
            self._relock_timer = None

    def _on_relock_due(self, generation: int) -> None:
        with self._mutex:
            if generation != self._relock_generation or self._closed:
                return
            self._relock_timer = None
            if self._door_state in _DOOR_OPEN_STATES:
                self._relock_on_close = True  # never throw the bolt into an open door
            else:
                self._auto_relock()
        self._deliver()

    def _auto_relock(self) -> None:
        self._relock_on_close = False
        if self._lock_state == LockState.UNLOCKED and self._motion is None:
            self._start_motion(LockOperationType.LOCK, OperationSource.AUTO)

    # --- keypad (called with the mutex held) --------------------------------------------

    def _local_now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), self._time_zone)

    def _act_on_keypad(self, verdict: KeypadVerdict) -> None:
        unlock, keypad = LockOperationType.UNLOCK, OperationSource.KEYPAD
        user_index = verdict.user_index
        if verdict.error is not None:
            log.info("keypad code refused: %s (user %s)", verdict.error.name, user_index)
            self._refuse(unlock, keypad, verdict.error, user_index)
            if verdict.lockout_engaged:
                self._engage_lockout()
            return
        log.info("keypad code of user %s accepted", user_index)
        if self._start_motion(unlock, keypad, user_index) and user_index is not None:
            self._keypad.record_use(user_index)

    def _engage_lockout(self) -> None:
        seconds = self._keypad.user_code_temporary_disable_time
        log.warning("keypad locked out for %d s after repeated wrong codes", seconds)
        self._outbox.append(DoorLockAlarm(AlarmCode.WRONG_CODE_ENTRY_LIMIT))
        self._lockout_timer = self._scheduler.call_later(seconds, self._on_lockout_over)

    def _on_lockout_over(self) -> None:
        with self._mutex:
            if self._closed:
                return  # close() cancelled us after the timer had already fired
            self._lockout_timer = None
            self._keypad.end_lockout()

    # --- event delivery (called without the mutex) -------------------------------------

    def _deliver(self) -> None:
        with self._mutex:
            if self._delivering:
                return  # the delivering thread will pick up our events, in order
            self._delivering = True
        try:
            while (event := self._next_event()) is not None:
                for callback in self._subscribers_snapshot():
                    _notify(callback, event)
        except BaseException:
            with self._mutex:
                self._delivering = False
            raise

    def _next_event(self) -> LockEvent | None:
        # Popping and giving up the delivering role happen under one lock hold, so an
        # event queued by another thread meanwhile is never stranded.
        with self._mutex:
            if self._outbox:
                return self._outbox.popleft()
            self._delivering = False
            return None

    def _subscribers_snapshot(self) -> tuple[Callable[[LockEvent], None], ...]:
        with self._mutex:
            return tuple(self._subscribers)


def _notify(callback: Callable[[LockEvent], None], event: LockEvent) -> None:
    # One faulty subscriber must not stop the others from hearing about the lock.
    try:
        callback(event)
    except Exception:
        log.exception("lock event subscriber failed on %r", event)


def _check_percent(percent: int) -> None:
    if not 0 <= percent <= 100:
        raise ValueError(f"battery percent must be 0..100, got {percent}")
