"""What Zigbee2MQTT's payloads mean, read into typed values; pure, no state, no I/O.

Values follow zigbee-herdsman-converters 26.x: `fz.lock` (state, lock_state,
door_state, auto_relock_time), `fz.lock_operation_event` and
`fz.lock_programming_event` (action, action_source_name, action_user; never cached by
Zigbee2MQTT, so each arrives once), `fz.lock_pin_code_response` (users), Yale's vendor
alarm converters (`alarm`, cached, and the one-shot `action: "error_jammed"`), and the
IAS zone `contact` of contact sensors (true = closed).

A value that is present but not understood is logged and read as absent, so a bad
payload can never move the model (in particular never to "unlocked"). Log lines carry
the field name and a short repr of that one field: never a whole payload, which may
hold keypad codes (`users.N.pin_code` with the `expose_pin` option). A payload that is
not JSON (including JSON nested deeper than the parser takes) or not the expected shape
is dropped whole, logged by topic and size only; the driver parses nothing over
`MAX_PAYLOAD_BYTES`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeGuard

from doorstep.hub.lock import (
    AlarmCode,
    DoorState,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)

log = logging.getLogger("doorstep.hub.drivers.zigbee2mqtt")

MAX_PIN_USER = 0xFFFE  # ZCL user ids are uint16; Zigbee2MQTT checks the device's own limit
# A lock's whole state with 250 keypad slots, codes included, is under 16 KiB.
MAX_PAYLOAD_BYTES = 64 * 1024

JAM_ACTION = "error_jammed"
JAM_ALARM = "deadbolt_jammed"


class PinUserType(StrEnum):
    """Zigbee2MQTT's `pin_code.user_type` values (ZCL user types)."""

    UNRESTRICTED = "unrestricted"
    YEAR_DAY_SCHEDULE = "year_day_schedule"
    WEEK_DAY_SCHEDULE = "week_day_schedule"
    MASTER = "master"
    NON_ACCESS = "non_access"


class PinSlotStatus(StrEnum):
    """A keypad user slot as the lock reported it (ZCL user status)."""

    AVAILABLE = "available"
    ENABLED = "enabled"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class PinSlotChange:
    """The lock reported a keypad slot's new status (never its code)."""

    user: int
    status: PinSlotStatus


_LOCK, _UNLOCK = LockOperationType.LOCK, LockOperationType.UNLOCK
_PIN_STATUSES = {status.value: status for status in PinSlotStatus}
_LOCK_STATES = {
    "locked": LockState.LOCKED,
    "unlocked": LockState.UNLOCKED,
    "not_fully_locked": LockState.NOT_FULLY_LOCKED,
}
_STATES = {"LOCK": LockState.LOCKED, "UNLOCK": LockState.UNLOCKED}
_DOOR_STATES = {
    "open": DoorState.OPEN,
    "closed": DoorState.CLOSED,
    "error_jammed": DoorState.JAMMED,
    "error_forced_open": DoorState.FORCED_OPEN,
    "error_unspecified": DoorState.UNSPECIFIED_ERROR,
}
_SOURCE_NAMES = {  # constants.lockSourceName; "rf" is a command over Zigbee
    "keypad": OperationSource.KEYPAD,
    "rf": OperationSource.REMOTE,
    "manual": OperationSource.MANUAL,
    "rfid": OperationSource.RFID,
    "fingerprint": OperationSource.BIOMETRIC,
}
# action -> (operation, source); None: the source is `action_source_name`'s
_ACTION_MOVES: dict[str, tuple[LockOperationType, OperationSource | None]] = {
    "lock": (_LOCK, None),
    "unlock": (_UNLOCK, None),
    "one_touch_lock": (_LOCK, OperationSource.BUTTON),
    "key_lock": (_LOCK, OperationSource.MANUAL),
    "key_unlock": (_UNLOCK, OperationSource.MANUAL),
    "auto_lock": (_LOCK, OperationSource.AUTO),
    "schedule_lock": (_LOCK, OperationSource.SCHEDULE),
    "schedule_unlock": (_UNLOCK, OperationSource.SCHEDULE),
    "manual_lock": (_LOCK, OperationSource.MANUAL),
    "manual_unlock": (_UNLOCK, OperationSource.MANUAL),
    "keypad_lock": (_LOCK, OperationSource.KEYPAD),  # Yale vendor alarm converter
    "keypad_unlock": (_UNLOCK, OperationSource.KEYPAD),
}
_ACTION_FAILURES = {
    "lock_failure_invalid_pin_or_id": (_LOCK, OperationError.INVALID_CREDENTIAL),
    "lock_failure_invalid_schedule": (_LOCK, OperationError.RESTRICTED),
    "unlock_failure_invalid_pin_or_id": (_UNLOCK, OperationError.INVALID_CREDENTIAL),
    "unlock_failure_invalid_schedule": (_UNLOCK, OperationError.RESTRICTED),
}
_PROGRAMMING = {
    "pin_code_added": PinSlotStatus.ENABLED,
    "pin_code_changed": PinSlotStatus.ENABLED,
    "pin_code_deleted": PinSlotStatus.AVAILABLE,
}
_ALARMS = {  # Yale's `alarm` values (devices/yale.ts) that Matter has a code for
    "lock_reset_to_factory_defaults": AlarmCode.LOCK_FACTORY_RESET,
    "rf_module_power_cycled": AlarmCode.LOCK_RADIO_POWER_CYCLED,
    "tamper_alarm_keypad_attempts": AlarmCode.WRONG_CODE_ENTRY_LIMIT,
    "tamper_alarm_front_escutcheon": AlarmCode.FRONT_ESCUTCHEON_REMOVED,
}


@dataclass(frozen=True, slots=True)
class Action:
    """The one-shot `action` of a lock document, with who did it."""

    name: str
    source: OperationSource
    user: int | None

    def move(self) -> tuple[LockOperationType, OperationSource] | None:
        """The bolt movement this action announces (its lock_state report may follow)."""
        move = _ACTION_MOVES.get(self.name)
        if move is None:
            return None
        operation, source = move
        return operation, source or self.source

    def failure(self) -> tuple[LockOperationType, OperationError] | None:
        """The refused attempt (e.g. a wrong keypad code) this action reports."""
        return _ACTION_FAILURES.get(self.name)

    def pin_slot(self) -> tuple[int, PinSlotStatus] | None:
        """The keypad slot a programming event changed."""
        status = _PROGRAMMING.get(self.name)
        if status is None or self.user is None:
            return None
        return self.user, status


@dataclass(frozen=True, slots=True)
class LockReading:
    """What one `<base>/<lock>` document says; None where it says nothing usable."""

    lock_state: LockState | None = None
    door_state: DoorState | None = None
    battery: int | None = None
    auto_relock_time: int | None = None
    pin_slots: tuple[tuple[int, PinSlotStatus], ...] = ()
    action: Action | None = None
    alarm: str | None = None


def read_presence(payload: bytes) -> bool | None:
    """`{"state": "online"|"offline"}` (Zigbee2MQTT 2.x) or the 1.x plain string, as
    True/False; None for anything else."""
    if payload in (b"online", b"offline"):
        return payload == b"online"
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        return None
    state = document.get("state") if isinstance(document, dict) else None
    return {"online": True, "offline": False}.get(state) if isinstance(state, str) else None


def read_document(payload: bytes, topic: str) -> dict[str, Any] | None:
    """A device state payload as a JSON object, or None (logged, never its contents)."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        log.warning("ignored a payload on %s: not JSON (%d bytes)", topic, len(payload))
        return None
    if not isinstance(document, dict):
        log.warning("ignored a payload on %s: not a JSON object", topic)
        return None
    return document


def read_lock_document(document: dict[str, Any], device: str) -> LockReading:
    """Read a lock's state document (see the module docstring for the fields)."""
    return LockReading(
        lock_state=_lock_state(document, device),
        door_state=_door_state(document, device),
        battery=_battery(document, device),
        auto_relock_time=_auto_relock_time(document, device),
        pin_slots=_pin_slots(document, device),
        action=_action(document, device),
        alarm=_alarm(document, device),
    )


def read_contact(document: dict[str, Any], device: str) -> DoorState | None:
    """A contact sensor's door position: `contact` true is closed, false is open."""
    contact = document.get("contact")
    if contact is None:
        return None
    if not isinstance(contact, bool):
        _ignored("contact", contact, device)
        return None
    return DoorState.CLOSED if contact else DoorState.OPEN


def alarm_code(alarm: str) -> AlarmCode | None:
    """The Matter alarm for a vendor `alarm` value, if there is one."""
    return _ALARMS.get(alarm)


def _ignored(key: str, value: Any, device: str) -> None:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    log.warning("ignored %s=%s from %s: not a known value", key, text, device)


def _lock_state(document: dict[str, Any], device: str) -> LockState | None:
    # `lock_state` is the truth; `state` folds not_fully_locked into "UNLOCK", so it is
    # read only from devices that send no `lock_state`, and never instead of a bad one.
    key, table = ("lock_state", _LOCK_STATES) if "lock_state" in document else ("state", _STATES)
    value = document.get(key)
    state = table.get(value) if isinstance(value, str) else None
    if state is None and value is not None:
        _ignored(key, value, device)
    return state


def _door_state(document: dict[str, Any], device: str) -> DoorState | None:
    value = document.get("door_state")
    if value is None or value == "undefined":  # "undefined": the lock has no sensor
        return None
    door = _DOOR_STATES.get(value) if isinstance(value, str) else None
    if door is None:
        _ignored("door_state", value, device)
    return door


def _battery(document: dict[str, Any], device: str) -> int | None:
    value = document.get("battery")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        _ignored("battery", value, device)
        return None
    return round(value)


def _auto_relock_time(document: dict[str, Any], device: str) -> int | None:
    value = document.get("auto_relock_time")
    if value is None:
        return None
    if not _is_count(value):
        _ignored("auto_relock_time", value, device)
        return None
    return int(value)


def _pin_slots(document: dict[str, Any], device: str) -> tuple[tuple[int, PinSlotStatus], ...]:
    # `users` may carry codes (`expose_pin`): read the statuses only, log no values.
    users = document.get("users")
    if users is None:
        return ()
    if not isinstance(users, dict):
        log.warning("ignored users from %s: not an object", device)
        return ()
    slots = []
    for key, slot in users.items():
        status = slot.get("status") if isinstance(slot, dict) else None
        if key.isdigit() and int(key) <= MAX_PIN_USER and status in _PIN_STATUSES:
            slots.append((int(key), _PIN_STATUSES[status]))
    return tuple(slots)


def _action(document: dict[str, Any], device: str) -> Action | None:
    name = document.get("action")
    if name is None:
        return None
    if not isinstance(name, str):
        _ignored("action", name, device)
        return None
    source_name = document.get("action_source_name")
    source = _SOURCE_NAMES.get(source_name) if isinstance(source_name, str) else None
    user = document.get("action_user")
    valid_user = _is_count(user) and user <= MAX_PIN_USER
    return Action(name, source or OperationSource.UNSPECIFIED, user if valid_user else None)


def _alarm(document: dict[str, Any], device: str) -> str | None:
    alarm = document.get("alarm")
    if alarm is not None and not isinstance(alarm, str):
        _ignored("alarm", alarm, device)
        return None
    return alarm


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
