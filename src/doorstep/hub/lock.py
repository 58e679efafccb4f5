"""The hub's model of a door lock, after the Matter Door Lock cluster (0x0101).

Every driver (simulated, Zigbee2MQTT, Matter server, ...) maps its device onto these
types, so the hub agent reasons about one lock whatever the radio. Enum values are
Matter's own, so they can be logged or sent on the wire without translation.

A driver's `unlock()` and `lock()` only *request* a motor movement; what actually
happened arrives later as events (`LockOperation`, `LockOperationError`,
`DoorLockAlarm`, `DoorStateChange`), as it does from a real lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, TypeAlias


class LockState(IntEnum):
    """Matter LockState attribute (id 0)."""

    NOT_FULLY_LOCKED = 0
    LOCKED = 1
    UNLOCKED = 2
    UNLATCHED = 3


class DoorState(IntEnum):
    """Matter DoorState attribute (id 3), reported by the door position sensor."""

    OPEN = 0
    CLOSED = 1
    JAMMED = 2
    FORCED_OPEN = 3
    UNSPECIFIED_ERROR = 4
    AJAR = 5


class OperationSource(IntEnum):
    """Matter OperationSourceEnum: who or what moved the bolt."""

    UNSPECIFIED = 0
    MANUAL = 1
    PROPRIETARY_REMOTE = 2
    KEYPAD = 3
    AUTO = 4
    BUTTON = 5
    SCHEDULE = 6
    REMOTE = 7
    RFID = 8
    BIOMETRIC = 9
    ALIRO = 10


class AlarmCode(IntEnum):
    """Matter AlarmCodeEnum (2 is unused by the spec)."""

    LOCK_JAMMED = 0
    LOCK_FACTORY_RESET = 1
    LOCK_RADIO_POWER_CYCLED = 3
    WRONG_CODE_ENTRY_LIMIT = 4
    FRONT_ESCUTCHEON_REMOVED = 5
    DOOR_FORCED_OPEN = 6
    DOOR_AJAR = 7
    FORCED_USER = 8


class LockOperationType(IntEnum):
    """Matter LockOperationTypeEnum."""

    LOCK = 0
    UNLOCK = 1
    NON_ACCESS_USER_EVENT = 2
    FORCED_USER_EVENT = 3
    UNLATCH = 4


class OperationError(IntEnum):
    """Matter OperationErrorEnum."""

    UNSPECIFIED = 0
    INVALID_CREDENTIAL = 1
    DISABLED_USER_DENIED = 2
    RESTRICTED = 3
    INSUFFICIENT_BATTERY = 4


@dataclass(frozen=True, slots=True)
class LockOperation:
    """Matter event 2: the bolt moved.

    `user_index` is the lock's user whose credential moved it (a keypad code), as in
    Matter's `userIndex`; None when no user is known (remote, manual, auto).
    """

    operation: LockOperationType
    source: OperationSource
    user_index: int | None = None
    # Another controller's command (Matter: an event naming another fabric or node than
    # the hub's): reported as itself, never the outcome of a request of the hub's.
    other_controller: bool = False


@dataclass(frozen=True, slots=True)
class LockOperationError:
    """Matter event 3: a lock or unlock was attempted and failed.

    `user_index` names the user whose credential was refused (disabled, out of
    schedule), as in Matter's `userIndex`; None when no user is known.
    """

    operation: LockOperationType
    source: OperationSource
    error: OperationError
    user_index: int | None = None
    other_controller: bool = False  # as for `LockOperation`


@dataclass(frozen=True, slots=True)
class DoorStateChange:
    """Matter event 1: the door position sensor changed."""

    door_state: DoorState


@dataclass(frozen=True, slots=True)
class DoorLockAlarm:
    """Matter event 0: something the residents must hear about."""

    alarm: AlarmCode


LockEvent: TypeAlias = LockOperation | LockOperationError | DoorStateChange | DoorLockAlarm


@dataclass(frozen=True, slots=True)
class LockStatus:
    """A snapshot of the lock and its door sensor."""

    lock_state: LockState
    door_state: DoorState
    battery_percent: int
    jammed: bool
    online: bool

    @property
    def secure(self) -> bool:
        """Online, bolt locked AND door closed: the only state that ends an entry (DESIGN 4).

        Fail closed: an offline lock's states are only its last word, which may be stale,
        so it is never secure, whatever it last reported."""
        return (
            self.online
            and self.lock_state == LockState.LOCKED
            and self.door_state == DoorState.CLOSED
        )


class LockError(Exception):
    """The driver refused a request outright (offline, closed); the bolt did not move."""


class LockDriver(Protocol):
    """What the hub agent needs from a lock, whatever drives it."""

    def status(self) -> LockStatus:
        """The latest known state."""
        ...

    def unlock(self, source: OperationSource) -> None:
        """Request an unlock and return at once; the outcome arrives as events.

        Raises LockError when the request cannot even be sent.
        """
        ...

    def lock(self, source: OperationSource) -> None:
        """Request a lock and return at once; the outcome arrives as events.

        Raises LockError when the request cannot even be sent.
        """
        ...

    def subscribe(self, callback: Callable[[LockEvent], None]) -> None:
        """Call `callback` with every event from now on, in the order they happened."""
        ...

    def close(self) -> None:
        """Stop timers and release the device; later requests raise LockError."""
        ...
