"""The lock as the Zigbee2MQTT driver knows it, moved only by what Zigbee2MQTT says.

`LockModel` holds the link facts (connected, bridge online, lock available, a state
reported since the link came back), the lock and door states, the one pending request
and whether a relock is owed; it turns readings into hub lock events in its `Outbox`.
It does no I/O and takes no locks: the driver calls it with its mutex held, and sends
the reads and relocks the model asks for (`take_refresh`, `take_relock`) after
releasing it.

Rules, all failing closed:
- A pending request completes when the lock reports its target state after showing it
  acted: the bolt was unknown or elsewhere when it was asked (or in a report since), so
  the report is a movement; or the lock's operation event for it came after the request.
  A report of the state the bolt was already in proves nothing (Zigbee2MQTT republishes
  its cached state with every message, and a `/get` answer may have been read before
  the command landed): the request then waits for evidence or times out. Nor does a
  bolt state from before the link, the bridge or the lock came back (not `_fresh`):
  Zigbee2MQTT's cache may be older than the bolt, and nothing tells its cached copy
  from the answer to the driver's `/get`. It fails on a jam, on losing the link, the
  bridge or the lock, or (driver's timer) on silence.
- An unlock with no known outcome (silence, or cut off by losing the link, the bridge
  or the lock) owes a relock: a LOCK (source AUTO) the driver sends as soon as the lock
  is reachable. So does any lock request cut off before its report: the bolt may still
  be open. A relock stays owed until it is sent, and is owed again if it is cut off in
  turn (a relock that meets silence or a jam is not sent again: that is an error event).
- `not_fully_locked` (as a change), `action: "error_jammed"` and a new
  `alarm: "deadbolt_jammed"` are jams: one LOCK_JAMMED alarm until the lock reports
  locked or unlocked again.
- A movement nobody here asked for is reported with the source its `action` named,
  if that came within `HINT_SECONDS` before; otherwise UNSPECIFIED.
- First readings (bolt, door) say where things are, not that they changed: no event.
  So does the first bolt reading since the link, the bridge or the lock came back, when
  it says locked (it may be Zigbee2MQTT's cache; an unlocked one is reported).
- A contact sensor's replayed (retained) state while its availability says offline is
  history: the door stays unknown until it reports live.
- `alarm` is cached by Zigbee2MQTT, so only a change of it is news, and the value in
  the first document is history. So is a jam alarm in a replayed (retained) document:
  Zigbee2MQTT keeps `deadbolt_jammed` long after the bolt is freed, and whether it is
  jammed now is for the fresh read to say. Other alarm values new in a replayed
  document were raised while the link was down, and are reported.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from doorstep.hub.drivers._zigbee2mqtt.outbox import Outbox
from doorstep.hub.drivers._zigbee2mqtt.payloads import (
    JAM_ACTION,
    JAM_ALARM,
    LockReading,
    PinSlotChange,
    PinSlotStatus,
    alarm_code,
    read_contact,
    read_lock_document,
)
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    DoorState,
    DoorStateChange,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    LockStatus,
    OperationError,
    OperationSource,
)

log = logging.getLogger("doorstep.hub.drivers.zigbee2mqtt")

HINT_SECONDS = 5.0
UNKNOWN_LOCK = LockState.NOT_FULLY_LOCKED  # never LOCKED: unknown must not look secure
UNKNOWN_DOOR = DoorState.UNSPECIFIED_ERROR  # never CLOSED, for the same reason

_LOCK, _UNLOCK = LockOperationType.LOCK, LockOperationType.UNLOCK
_TARGETS = {_LOCK: LockState.LOCKED, _UNLOCK: LockState.UNLOCKED}


@dataclass(eq=False)
class Pending:
    """One requested movement awaiting the lock's report; compared by identity."""

    operation: LockOperationType
    source: OperationSource
    timer: threading.Timer | None = None
    relock: bool = False  # it pays the relock owed (see the module docstring)
    proven: bool = False  # the lock has shown it acted on it (see the module docstring)


@dataclass(frozen=True, slots=True)
class _Hint:
    """Who moved the bolt, from an `action` that came before its lock_state report."""

    operation: LockOperationType
    source: OperationSource
    at: float


class LockModel:
    """What the driver knows about one lock and its door; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        require_availability: bool,
        clock: Callable[[], float],
        outbox: Outbox,
    ) -> None:
        self.name = name
        self.pending: Pending | None = None
        self.auto_relock: int | None = None
        self.pin_slots: dict[int, PinSlotStatus] = {}
        self._require_availability = require_availability
        self._clock = clock
        self._outbox = outbox
        self._connected = False
        self._closed = False
        self._bridge_online: bool | None = None
        self._lock_available: bool | None = None
        self._sensor_available: bool | None = None
        self._fresh = False  # a lock state arrived since the link last came back
        self._refresh = False  # Zigbee2MQTT should be asked to read the bolt
        self._relock_owed = False
        self._seen_lock = False
        self._lock_state: LockState | None = None
        self._door_state: DoorState | None = None
        self._battery: int | None = None
        self._jammed = False
        self._alarm: str | None = None
        self._hint: _Hint | None = None

    # --- what the driver reads --------------------------------------------------------

    def status(self) -> LockStatus:
        return LockStatus(
            lock_state=self._lock_state if self._lock_state is not None else UNKNOWN_LOCK,
            door_state=self._door_state if self._door_state is not None else UNKNOWN_DOOR,
            battery_percent=self._battery if self._battery is not None else 0,
            jammed=self._jammed,
            online=self.refusal(need_state=True) is None,
        )

    def refusal(self, *, need_state: bool) -> str | None:
        """Why a request cannot go out now, or None. Locking needs no known state."""
        if self._closed:
            return "driver is closed"
        if not self._connected:
            return "not connected to the Zigbee2MQTT broker"
        if self._bridge_online is not True:
            return "Zigbee2MQTT bridge is offline"
        if self._lock_available is False or (
            self._lock_available is None and self._require_availability
        ):
            return "lock is offline"
        if need_state and (self._lock_state is None or not self._fresh):
            return "lock has not reported its state yet"
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    def take_refresh(self) -> bool:
        """Whether to ask Zigbee2MQTT to read the bolt now (asked once per need)."""
        refresh, self._refresh = self._refresh, False
        return refresh

    def take_relock(self) -> bool:
        """Whether to start the relock owed now: one is owed, the lock is reachable and
        the motor is free. True settles the debt; `owe_relock` if it is not sent."""
        if not self._relock_owed or self.pending is not None:
            return False
        if self.refusal(need_state=False) is not None:
            return False
        self._relock_owed = False
        return True

    def owe_relock(self) -> None:
        self._relock_owed = True

    def begin(self, pending: Pending) -> None:
        """Make `pending` the request in motion. A bolt already reported at its target
        says nothing about the request until it has moved, and nor does a reading from
        before the link, the bridge or the lock came back (see the module docstring)."""
        pending.proven = self._fresh and self._lock_state != _TARGETS[pending.operation]
        self.pending = pending

    # --- the link ----------------------------------------------------------------------

    def on_connected(self) -> None:
        self._connected = True
        self._request_refresh()

    def on_disconnected(self, reason: str) -> None:
        if self._connected:
            log.warning("%s: lost the Zigbee2MQTT broker (%s)", self.name, reason)
        self._connected = False
        self._bridge_online = self._lock_available = self._sensor_available = None
        self._fresh = False
        self.fail_pending("broker connection lost", cut_off=True)

    def on_closed(self) -> None:
        self._closed = True
        self._connected = False
        self.cancel_pending()

    def on_bridge(self, online: bool) -> None:
        previous, self._bridge_online = self._bridge_online, online
        if not online:
            self.fail_pending("Zigbee2MQTT bridge went offline", cut_off=True)
        elif previous is not True:
            self._request_refresh()

    def on_lock_availability(self, online: bool) -> None:
        previous, self._lock_available = self._lock_available, online
        if not online:
            self.fail_pending("lock went offline", cut_off=True)
        elif previous is not True:
            self._request_refresh()

    def on_sensor_availability(self, online: bool) -> None:
        self._sensor_available = online
        if not online:
            self._set_door(UNKNOWN_DOOR)  # a silent sensor says nothing about the door

    def _request_refresh(self) -> None:
        self._fresh = False  # offline until the lock reports again
        self._refresh = True

    # --- requests ------------------------------------------------------------------------

    def cancel_pending(self) -> None:
        if self.pending is not None and self.pending.timer is not None:
            self.pending.timer.cancel()
        self.pending = None

    def fail_pending(self, reason: str, *, cut_off: bool = False) -> None:
        """Fail the pending request with an error event. `cut_off`: the lock went out of
        reach before it answered, so an unlock may still land, or a lock be lost with
        the bolt open: a relock is owed."""
        pending = self.pending
        if pending is None:
            return
        self.cancel_pending()
        log.warning("%s: requested %s failed: %s", self.name, pending.operation.name, reason)
        self.refuse(pending.operation, pending.source)
        if cut_off:
            self.owe_relock()

    def refuse(self, operation: LockOperationType, source: OperationSource) -> None:
        self._outbox.put(LockOperationError(operation, source, OperationError.UNSPECIFIED))

    # --- documents -----------------------------------------------------------------------

    def on_sensor_document(
        self, document: dict[str, Any], sensor: str, *, replayed: bool = False
    ) -> None:
        """Read one sensor document; `replayed`: the broker's retained copy. One replayed
        while the sensor is unavailable is its last word before it went silent: history,
        and the door stays unknown until the sensor reports live."""
        if replayed and self._sensor_available is False:
            return
        door = read_contact(document, sensor)
        if door is not None:
            self._set_door(door)

    def on_lock_document(
        self, document: dict[str, Any], *, door_from_lock: bool, replayed: bool = False
    ) -> None:
        """Read one lock document; `replayed`: the broker's retained copy, not a report."""
        reading = read_lock_document(document, self.name)
        first, self._seen_lock = not self._seen_lock, True
        if reading.battery is not None:
            self._battery = reading.battery
        if reading.auto_relock_time is not None:
            self.auto_relock = reading.auto_relock_time
        for user, status in reading.pin_slots:
            self._set_pin_slot(user, status)
        jammed = self._on_action(reading)
        history = first or (replayed and reading.alarm == JAM_ALARM)
        jammed = self._on_alarm(reading.alarm, history) or jammed
        if jammed:
            self._jam()
        if reading.lock_state is not None:
            self._on_lock_state(reading.lock_state)
        if door_from_lock and reading.door_state is not None:
            self._on_lock_door(reading.door_state)

    def _on_action(self, reading: LockReading) -> bool:
        """Act on the one-shot `action`; True when it reports a jam."""
        action = reading.action
        if action is None:
            return False
        if action.name == JAM_ACTION:
            return True
        failure, move, slot = action.failure(), action.move(), action.pin_slot()
        if failure is not None:
            self._outbox.put(LockOperationError(failure[0], action.source, failure[1]))
        elif move is not None:
            self._hint = _Hint(move[0], move[1], self._clock())
            if self.pending is not None and self.pending.operation == move[0]:
                self.pending.proven = True  # the lock says it made this movement
        elif slot is not None:
            self._set_pin_slot(*slot)
        return False

    def _on_alarm(self, alarm: str | None, history: bool) -> bool:
        """Act on a change of the cached `alarm`; True when it reports a jam. `history`:
        the value says where things stand, not that they changed."""
        previous, self._alarm = self._alarm, alarm
        if history or alarm is None or alarm == previous:
            return False
        if alarm == JAM_ALARM:
            return True
        code = alarm_code(alarm)
        if code is not None:
            self._outbox.put(DoorLockAlarm(code))
        return False

    def _on_lock_state(self, state: LockState) -> None:
        previous, self._lock_state = self._lock_state, state
        was_fresh, self._fresh = self._fresh, True
        if state == LockState.NOT_FULLY_LOCKED:
            if previous != LockState.NOT_FULLY_LOCKED:
                self._jam()
            return
        operation = _LOCK if state == LockState.LOCKED else _UNLOCK
        self._jammed = False
        pending = self.pending
        if pending is not None and pending.operation != operation:
            pending.proven = True  # the bolt is elsewhere: reaching the target is a movement
        if pending is not None and pending.operation == operation and pending.proven:
            self.cancel_pending()
            self._hint = None
            self._outbox.put(LockOperation(operation, pending.source))
        elif previous is not None and state != previous and (was_fresh or operation == _UNLOCK):
            # The first reading since the link, the bridge or the lock came back may be
            # Zigbee2MQTT's cache: "locked" there is no news of a movement (fail closed).
            self._outbox.put(LockOperation(operation, self._take_hint(operation)))

    def _take_hint(self, operation: LockOperationType) -> OperationSource:
        hint, self._hint = self._hint, None
        if hint is None or hint.operation != operation or self._clock() - hint.at > HINT_SECONDS:
            return OperationSource.UNSPECIFIED
        return hint.source

    def _jam(self) -> None:
        self._lock_state = LockState.NOT_FULLY_LOCKED
        if not self._jammed:
            self._jammed = True
            log.warning("%s: the bolt is jammed", self.name)
            self._outbox.put(DoorLockAlarm(AlarmCode.LOCK_JAMMED))
        self.fail_pending("jammed")

    def _on_lock_door(self, door: DoorState) -> None:
        if door == DoorState.FORCED_OPEN and self._door_state != door:
            self._outbox.put(DoorLockAlarm(AlarmCode.DOOR_FORCED_OPEN))
        self._set_door(door)

    def _set_door(self, door: DoorState) -> None:
        previous, self._door_state = self._door_state, door
        if previous is not None and door != previous:
            self._outbox.put(DoorStateChange(door))

    def _set_pin_slot(self, user: int, status: PinSlotStatus) -> None:
        if self.pin_slots.get(user) != status:
            self.pin_slots[user] = status
            self._outbox.put(PinSlotChange(user, status))
