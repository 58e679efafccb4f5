"""The Matter Door Lock cluster (0x0101) as python-matter-server carries it in JSON.

Ids, enums and command payloads for the Matter driver (`drivers.matter`). Payload keys are
the field names of the CHIP SDK's `chip.clusters.Objects.DoorLock.Commands.*`
dataclasses, which python-matter-server's `device_command` decodes; byte strings
(PIN codes) travel base64-encoded, as its JSON helpers encode them. Attribute paths are
`"<endpoint>/<cluster>/<attribute>"`, the keys of a node dump.

The builders validate what the spec bounds (indices from 1, a day mask in 1..127, a
start before its end, a PIN of digits) so a bad request fails here, before it reaches
the lock. A PIN is never put in an exception message.
"""

from __future__ import annotations

import base64
from datetime import time
from enum import IntEnum, IntFlag
from typing import Any

# The hub's lock model is Matter's: its user and schedule enums are the cluster's own.
from doorstep.hub.keypad import DaysMask, UserStatus, UserType

DOOR_LOCK_CLUSTER = 0x0101
POWER_SOURCE_CLUSTER = 0x002F
OPERATIONAL_CREDENTIALS_CLUSTER = 0x003E
ROOT_ENDPOINT = 0
# Operational Credentials' CurrentFabricIndex, on the root endpoint: the fabric of the
# session that reads it, so in the server's dump the server's fabric as the lock numbers it.
CURRENT_FABRIC_INDEX = 5


class DoorLockAttribute(IntEnum):
    """Door Lock attribute ids the driver reads."""

    LOCK_STATE = 0
    DOOR_STATE = 3
    NUMBER_OF_WEEK_DAY_SCHEDULES_PER_USER = 20
    NUMBER_OF_YEAR_DAY_SCHEDULES_PER_USER = 21
    MAX_PIN_CODE_LENGTH = 23
    MIN_PIN_CODE_LENGTH = 24
    REQUIRE_PIN_FOR_REMOTE_OPERATION = 51
    FEATURE_MAP = 0xFFFC


class PowerSourceAttribute(IntEnum):
    """Power Source cluster (0x002F) attributes that tell the battery level."""

    BAT_PERCENT_REMAINING = 12  # in half percent: 0..200
    BAT_CHARGE_LEVEL = 14  # 0 OK, 1 Warning, 2 Critical


class DoorLockEventId(IntEnum):
    """Door Lock event ids."""

    DOOR_LOCK_ALARM = 0
    DOOR_STATE_CHANGE = 1
    LOCK_OPERATION = 2
    LOCK_OPERATION_ERROR = 3
    LOCK_USER_CHANGE = 4


class DoorLockFeature(IntFlag):
    """FeatureMap bits (attribute 0xFFFC)."""

    PIN_CREDENTIAL = 1 << 0
    RFID_CREDENTIAL = 1 << 1
    WEEK_DAY_ACCESS_SCHEDULES = 1 << 4
    DOOR_POSITION_SENSOR = 1 << 5
    USER = 1 << 8
    YEAR_DAY_ACCESS_SCHEDULES = 1 << 10


class DataOperation(IntEnum):
    """DataOperationTypeEnum."""

    ADD = 0
    CLEAR = 1
    MODIFY = 2


class CredentialRule(IntEnum):
    """CredentialRuleEnum: how many credentials a user must present."""

    SINGLE = 0
    DUAL = 1
    TRI = 2


class CredentialType(IntEnum):
    """CredentialTypeEnum (the driver manages PINs only)."""

    PROGRAMMING_PIN = 0
    PIN = 1
    RFID = 2


class DlStatus(IntEnum):
    """DlStatus, the `status` of a SetCredentialResponse."""

    SUCCESS = 0x00
    FAILURE = 0x01
    DUPLICATE = 0x02
    OCCUPIED = 0x03
    INVALID_FIELD = 0x85
    RESOURCE_EXHAUSTED = 0x89
    NOT_FOUND = 0x8B


# Commands the spec marks "timed invoke required": a plain invoke gets
# NEEDS_TIMED_INTERACTION (0xC6) from the lock.
TIMED_COMMANDS = frozenset(
    {
        "LockDoor",
        "UnlockDoor",
        "UnlockWithTimeout",
        "UnboltDoor",
        "SetUser",
        "ClearUser",
        "SetCredential",
        "ClearCredential",
    }
)

CLEAR_ALL_SCHEDULES = 0xFE  # a schedule index meaning "every schedule of this user"
PIN_FIELD = "PINCode"


def attribute_path(endpoint: int, cluster: int, attribute: int) -> str:
    """The node-dump key of one attribute, e.g. "1/257/0"."""
    return f"{endpoint}/{cluster}/{attribute}"


def encode_octets(value: str) -> str:
    """An octet string as python-matter-server's JSON carries it (base64)."""
    return base64.b64encode(value.encode()).decode("ascii")


def lock_payload(pin: str | None) -> dict[str, Any]:
    """Payload of LockDoor / UnlockDoor: the PIN for remote operation, or null."""
    return {PIN_FIELD: encode_octets(pin) if pin is not None else None}


def set_user_payload(
    user_index: int,
    *,
    name: str | None,
    unique_id: int | None,
    status: UserStatus,
    user_type: UserType,
    credential_rule: CredentialRule,
    modify: bool,
) -> dict[str, Any]:
    """Payload of SetUser (timed)."""
    _check_index("user index", user_index)
    return {
        "operationType": DataOperation.MODIFY if modify else DataOperation.ADD,
        "userIndex": user_index,
        "userName": name,
        "userUniqueID": unique_id,
        "userStatus": status,
        "userType": user_type,
        "credentialRule": credential_rule,
    }


def clear_user_payload(user_index: int) -> dict[str, Any]:
    """Payload of ClearUser (timed)."""
    _check_index("user index", user_index)
    return {"userIndex": user_index}


def set_pin_payload(
    credential_index: int,
    pin: str,
    *,
    user_index: int | None,
    length: tuple[int, int] | None,
    modify: bool,
) -> dict[str, Any]:
    """Payload of SetCredential (timed) for a PIN; `length` is the lock's (min, max)."""
    _check_index("credential index", credential_index)
    if user_index is not None:
        _check_index("user index", user_index)
    check_pin(pin, length)
    return {
        "operationType": DataOperation.MODIFY if modify else DataOperation.ADD,
        "credential": pin_credential(credential_index),
        "credentialData": encode_octets(pin),
        "userIndex": user_index,
        "userStatus": None,
        "userType": None,
    }


def clear_pin_payload(credential_index: int) -> dict[str, Any]:
    """Payload of ClearCredential (timed) for one PIN slot."""
    _check_index("credential index", credential_index)
    return {"credential": pin_credential(credential_index)}


def pin_credential(credential_index: int) -> dict[str, int]:
    """A CredentialStruct naming one PIN slot."""
    return {"credentialType": CredentialType.PIN, "credentialIndex": credential_index}


def week_day_schedule_payload(
    index: int, user_index: int, days: DaysMask, start: time, end: time
) -> dict[str, Any]:
    """Payload of SetWeekDaySchedule: `days` between `start` and `end`, lock-local time."""
    _check_index("schedule index", index)
    _check_index("user index", user_index)
    if not 0 < int(days) <= 0x7F:
        raise ValueError("a week-day schedule needs at least one day")
    if (start.hour, start.minute) >= (end.hour, end.minute):
        raise ValueError("a week-day schedule must start before it ends")
    return {
        "weekDayIndex": index,
        "userIndex": user_index,
        "daysMask": int(days),
        "startHour": start.hour,
        "startMinute": start.minute,
        "endHour": end.hour,
        "endMinute": end.minute,
    }


def year_day_schedule_payload(
    index: int, user_index: int, local_start: int, local_end: int
) -> dict[str, Any]:
    """Payload of SetYearDaySchedule; the times are epoch seconds in the lock's local time."""
    _check_index("schedule index", index)
    _check_index("user index", user_index)
    if not 0 <= local_start < local_end:
        raise ValueError("a year-day schedule must start before it ends")
    return {
        "yearDayIndex": index,
        "userIndex": user_index,
        "localStartTime": local_start,
        "localEndTime": local_end,
    }


def clear_schedule_payload(kind: str, index: int, user_index: int) -> dict[str, Any]:
    """Payload of ClearWeekDaySchedule (`kind` "weekDay") or ClearYearDaySchedule ("yearDay")."""
    if index != CLEAR_ALL_SCHEDULES:
        _check_index("schedule index", index)
    _check_index("user index", user_index)
    return {f"{kind}Index": index, "userIndex": user_index}


def check_pin(pin: str, length: tuple[int, int] | None) -> None:
    """Raise ValueError unless `pin` is digits within the lock's (min, max) length."""
    if not (pin.isascii() and pin.isdigit()):
        raise ValueError("a PIN must be made of digits")
    if length is not None and not length[0] <= len(pin) <= length[1]:
        raise ValueError(f"a PIN must be {length[0]} to {length[1]} digits long")


def _check_index(what: str, index: int) -> None:
    if not 1 <= index <= 0xFFFD:
        raise ValueError(f"{what} must be 1..65533, got {index}")
