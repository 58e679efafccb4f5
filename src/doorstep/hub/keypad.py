"""Keypad users, PIN credentials, schedules and wrong-code lockout, after Matter's Door Lock.

The Matter Door Lock cluster (0x0101) keeps its access data in three tables: users
(SetUser/GetUser/ClearUser), credentials (SetCredential/GetCredentialStatus/
ClearCredential; only PINs here) and per-user week-day and year-day schedules. This
module is that model, pure (no threads, no clock of its own), so that every driver
maps onto one set of types: `KeypadStore` holds the tables and judges a typed code;
`KeypadLock` is the optional capability a `hub.lock.LockDriver` offers when its lock
has a keypad. Enum values and status names are Matter's own.

Rules, as the spec and the SDK's door-lock server apply them (TC_DRLK_2_5, 2_9):
- Indices start at 1 and are bounded by the lock's limits (`KeypadLimits`); an index
  out of range is INVALID_COMMAND. `CLEAR_ALL` (0xFFFE) clears every user or every PIN,
  `CLEAR_ALL_SCHEDULES` (0xFE) every schedule of one user. Clearing what is not there
  succeeds.
- SetUser: adding over an occupied slot is OCCUPIED; modifying an empty one is
  INVALID_COMMAND; on modify, a None field keeps its value. Clearing a user clears its
  PINs and schedules.
- SetCredential: a PIN of MinPINCodeLength..MaxPINCodeLength digits (else
  INVALID_COMMAND); the same PIN in any slot is DUPLICATE (checked first, as the SDK
  does); an occupied slot is OCCUPIED; a user already holding
  NumberOfCredentialsSupportedPerUser credentials is RESOURCE_EXHAUSTED (TC_DRLK_2_9
  step 15d). With no user index a new user is made in the first free slot; when every
  slot is taken that is RESOURCE_EXHAUSTED (the SDK's example server answers OCCUPIED).
  Clearing a user's last PIN clears the user too.
- SetWeekDaySchedule: index 0 or past the limit, a day mask of 0 or with bit 0x80, or a
  start not before its end is INVALID_COMMAND; a user that does not exist is FAILURE;
  a schedule that does not exist is NOT_FOUND. Year-day likewise (start before end).

Who gets in (`KeypadStore.enter_code`), at the lock's local wall-clock time:
- An unknown code is INVALID_CREDENTIAL, and only that counts as a wrong code (as in
  the SDK). A disabled user is DISABLED_USER_DENIED; a remote-only user, or a schedule
  user outside its schedules, is RESTRICTED.
- WEEK_DAY_SCHEDULE users need a week-day schedule covering now; YEAR_DAY_SCHEDULE
  users a year-day one; SCHEDULE_RESTRICTED users need at least one schedule, and one
  of each kind they have must cover now (fail closed: the week-day hours apply within
  the year-day dates; the SDK's lock app lets in on either). A schedule user with no
  schedule never gets in. Other user types ignore schedules, as in the SDK's lock app.
- Windows include both ends, to the second, as the SDK's lock app evaluates them: a
  week-day schedule 09:00-17:00 lets in from 09:00:00 through 17:00:00 on its days; a
  year-day schedule from `local_start` through `local_end`.
- Year-day times are Matter `epoch-s` in local time: seconds from 2000-01-01 00:00 on the
  lock's wall clock (`local_epoch_seconds`), not Unix time. So across a DST change the
  window follows the wall clock: it is an hour shorter in real time over a spring-forward
  night, and a window ending inside the repeated autumn hour reopens when the clocks go
  back (the wall clock reads that hour twice).
- WrongCodeEntryLimit consecutive wrong codes engage the lockout; while it lasts every
  code, even a valid one, is RESTRICTED and is not counted. The caller ends it after
  UserCodeTemporaryDisableTime seconds (`end_lockout`). A code that lets someone in
  resets the count. A DISPOSABLE user is spent (OCCUPIED_DISABLED) once used
  (`record_use`).
- PROGRAMMING users count as unrestricted. NON_ACCESS, FORCED and EXPIRING users are
  not modelled: SetUser refuses them with INVALID_COMMAND (fail closed).

PINs are kept only as keyed digests and never appear in a snapshot, a repr, an
exception or a log line; only user and credential indices do.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from enum import IntEnum, IntFlag
from typing import Protocol, TypeVar

from doorstep.hub.lock import OperationError

CLEAR_ALL = 0xFFFE
CLEAR_ALL_SCHEDULES = 0xFE
MATTER_EPOCH = datetime(2000, 1, 1)  # epoch-s counts from here (on the local wall clock)
MAX_USER_NAME_LENGTH = 10  # Matter's SetUser UserName limit
_SECOND = timedelta(seconds=1)


class KeypadStatus(IntEnum):
    """The failure statuses a keypad command can answer (Matter IM / DlStatus codes)."""

    FAILURE = 0x01
    DUPLICATE = 0x02
    OCCUPIED = 0x03
    INVALID_COMMAND = 0x85
    CONSTRAINT_ERROR = 0x87  # an attribute write out of range
    RESOURCE_EXHAUSTED = 0x89
    NOT_FOUND = 0x8B


class KeypadError(Exception):
    """The lock refused a keypad command; `status` says why, as Matter would."""

    def __init__(self, status: KeypadStatus, detail: str) -> None:
        super().__init__(f"{status.name}: {detail}")
        self.status = status


class UserStatus(IntEnum):
    """Matter UserStatusEnum (2 is unused by the spec)."""

    AVAILABLE = 0
    OCCUPIED_ENABLED = 1
    OCCUPIED_DISABLED = 3


class UserType(IntEnum):
    """Matter UserTypeEnum."""

    UNRESTRICTED = 0
    YEAR_DAY_SCHEDULE = 1
    WEEK_DAY_SCHEDULE = 2
    PROGRAMMING = 3
    NON_ACCESS = 4
    FORCED = 5
    DISPOSABLE = 6
    EXPIRING = 7
    SCHEDULE_RESTRICTED = 8
    REMOTE_ONLY = 9


SUPPORTED_USER_TYPES = frozenset(UserType) - {
    UserType.NON_ACCESS,
    UserType.FORCED,
    UserType.EXPIRING,
}


class DaysMask(IntFlag):
    """Matter DaysMaskMap of a week-day schedule (bit 0x80 is reserved)."""

    SUNDAY = 0x01
    MONDAY = 0x02
    TUESDAY = 0x04
    WEDNESDAY = 0x08
    THURSDAY = 0x10
    FRIDAY = 0x20
    SATURDAY = 0x40


@dataclass(frozen=True, slots=True)
class KeypadLimits:
    """The lock's fixed capacities (Matter attributes 17, 18, 20, 21, 23, 24, 28)."""

    total_users: int = 10
    pin_credentials: int = 10
    credentials_per_user: int = 2
    week_day_schedules_per_user: int = 4
    year_day_schedules_per_user: int = 4
    min_pin_length: int = 4
    max_pin_length: int = 8

    def __post_init__(self) -> None:
        for name in (
            "total_users",
            "pin_credentials",
            "credentials_per_user",
            "week_day_schedules_per_user",
            "year_day_schedules_per_user",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.total_users >= CLEAR_ALL or self.pin_credentials >= CLEAR_ALL:
            raise ValueError("user and credential counts must stay below 0xFFFE")
        if max(self.week_day_schedules_per_user, self.year_day_schedules_per_user) >= 0xFE:
            raise ValueError("schedule counts must stay below 0xFE")
        if not 1 <= self.min_pin_length <= self.max_pin_length:
            raise ValueError("PIN lengths must satisfy 1 <= min <= max")


@dataclass(frozen=True, slots=True)
class KeypadAttributes:
    """The keypad's limits and its two writable lockout attributes (48, 49)."""

    limits: KeypadLimits
    wrong_code_entry_limit: int
    user_code_temporary_disable_time: int


@dataclass(frozen=True, slots=True)
class User:
    """One occupied user slot; `credentials` are the indices of its PINs."""

    index: int
    name: str
    status: UserStatus
    user_type: UserType
    credentials: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PinCredential:
    """An occupied PIN slot and the user it belongs to (GetCredentialStatus)."""

    index: int
    user_index: int


@dataclass(frozen=True, slots=True)
class PinSet:
    """What SetCredential answers: the user holding the PIN, and the next free PIN slot."""

    user_index: int
    next_credential_index: int | None


@dataclass(frozen=True, slots=True)
class WeekDaySchedule:
    """Let `user_index` in on `days` from `start` through `end`, local wall-clock time."""

    index: int
    user_index: int
    days: DaysMask
    start: time
    end: time

    def covers(self, local_now: datetime) -> bool:
        """Whether the wall-clock time `local_now` falls inside this window (ends included)."""
        if not self.days & day_of(local_now):
            return False
        return self.start <= local_now.time().replace(microsecond=0) <= self.end


@dataclass(frozen=True, slots=True)
class YearDaySchedule:
    """Let `user_index` in from `local_start` through `local_end` (local epoch-s)."""

    index: int
    user_index: int
    local_start: int
    local_end: int

    def covers(self, local_now: datetime) -> bool:
        """Whether the wall-clock time `local_now` falls inside this window (ends included)."""
        return self.local_start <= local_epoch_seconds(local_now) <= self.local_end


_Schedule = TypeVar("_Schedule", WeekDaySchedule, YearDaySchedule)


@dataclass(frozen=True, slots=True)
class KeypadVerdict:
    """What the lock decided about one typed code.

    `error` is None when the person may go in. `user_index` is the user the code
    belongs to, when it is known; `lockout_engaged` says this code engaged the lockout.
    """

    error: OperationError | None
    user_index: int | None = None
    lockout_engaged: bool = False


def day_of(local_now: datetime) -> DaysMask:
    """The DaysMask bit of the wall-clock date of `local_now`."""
    return DaysMask(1 << ((local_now.weekday() + 1) % 7))  # Python's Monday is 0


def local_epoch_seconds(local_time: datetime) -> int:
    """Matter epoch-s of a wall-clock time: seconds since 2000-01-01 00:00 on that clock.

    Only the wall-clock fields count: an aware datetime's offset is ignored, so pass
    the time as the lock's own clock shows it (e.g. `now.astimezone(home_zone)`).
    """
    return (local_time.replace(tzinfo=None) - MATTER_EPOCH) // _SECOND


class KeypadLock(Protocol):
    """The keypad capability a `LockDriver` may also offer; raises KeypadError on refusal.

    A driver whose device cannot be reached raises `hub.lock.LockError` instead.
    """

    def keypad_attributes(self) -> KeypadAttributes:
        """The limits and the WrongCodeEntryLimit / UserCodeTemporaryDisableTime values."""
        ...

    def set_wrong_code_entry_limit(self, limit: int) -> None:
        """Write WrongCodeEntryLimit (1..255, else CONSTRAINT_ERROR)."""
        ...

    def set_user_code_temporary_disable_time(self, seconds: int) -> None:
        """Write UserCodeTemporaryDisableTime (1..255 s, else CONSTRAINT_ERROR)."""
        ...

    def set_user(
        self,
        user_index: int,
        *,
        name: str | None = None,
        user_type: UserType | None = None,
        status: UserStatus | None = None,
        modify: bool = False,
    ) -> None:
        """SetUser: add a user (or with `modify`, change one; None keeps a field)."""
        ...

    def get_user(self, user_index: int) -> User | None:
        """GetUser: the user in that slot, or None when it is available."""
        ...

    def clear_user(self, user_index: int) -> None:
        """ClearUser: remove a user with its PINs and schedules (CLEAR_ALL: every user)."""
        ...

    def set_pin(
        self, credential_index: int, pin: str, *, user_index: int | None, modify: bool = False
    ) -> PinSet:
        """SetCredential for a PIN; with no `user_index`, a new user is made for it."""
        ...

    def get_pin(self, credential_index: int) -> PinCredential | None:
        """GetCredentialStatus: who holds that PIN slot, or None when it is free."""
        ...

    def clear_pin(self, credential_index: int) -> None:
        """ClearCredential for one PIN slot (CLEAR_ALL: every PIN)."""
        ...

    def set_week_day_schedule(
        self, index: int, user_index: int, days: DaysMask, start: time, end: time
    ) -> None:
        """SetWeekDaySchedule, in the lock's local time, at minute resolution."""
        ...

    def get_week_day_schedule(self, index: int, user_index: int) -> WeekDaySchedule:
        """GetWeekDaySchedule (NOT_FOUND when that slot is empty)."""
        ...

    def clear_week_day_schedule(self, index: int, user_index: int) -> None:
        """ClearWeekDaySchedule (CLEAR_ALL_SCHEDULES: all of this user's)."""
        ...

    def set_year_day_schedule(
        self, index: int, user_index: int, local_start: int, local_end: int
    ) -> None:
        """SetYearDaySchedule; the times are local epoch-s (`local_epoch_seconds`)."""
        ...

    def get_year_day_schedule(self, index: int, user_index: int) -> YearDaySchedule:
        """GetYearDaySchedule (NOT_FOUND when that slot is empty)."""
        ...

    def clear_year_day_schedule(self, index: int, user_index: int) -> None:
        """ClearYearDaySchedule (CLEAR_ALL_SCHEDULES: all of this user's)."""
        ...


class KeypadStore:
    """One lock's keypad tables and wrong-code counter; implements `KeypadLock`.

    Not thread-safe: the driver that owns it serialises the calls. `locked_out` is True
    from the wrong code that reached WrongCodeEntryLimit until `end_lockout()`.
    """

    def __init__(
        self,
        limits: KeypadLimits | None = None,
        *,
        wrong_code_entry_limit: int = 5,
        user_code_temporary_disable_time: int = 60,
    ) -> None:
        self.limits = limits if limits is not None else KeypadLimits()
        self.wrong_code_entry_limit = _check_attribute(
            "WrongCodeEntryLimit", wrong_code_entry_limit
        )
        self.user_code_temporary_disable_time = _check_attribute(
            "UserCodeTemporaryDisableTime", user_code_temporary_disable_time
        )
        self.locked_out = False
        self._wrong_codes = 0
        self._users: dict[int, User] = {}
        self._pins: dict[int, PinCredential] = {}
        self._digests: dict[bytes, int] = {}
        self._week_days: dict[tuple[int, int], WeekDaySchedule] = {}
        self._year_days: dict[tuple[int, int], YearDaySchedule] = {}
        self._key = secrets.token_bytes(32)  # keys the PIN digests; never leaves the store

    # --- attributes --------------------------------------------------------------------

    def keypad_attributes(self) -> KeypadAttributes:
        return KeypadAttributes(
            self.limits, self.wrong_code_entry_limit, self.user_code_temporary_disable_time
        )

    def set_wrong_code_entry_limit(self, limit: int) -> None:
        self.wrong_code_entry_limit = _check_attribute("WrongCodeEntryLimit", limit)

    def set_user_code_temporary_disable_time(self, seconds: int) -> None:
        self.user_code_temporary_disable_time = _check_attribute(
            "UserCodeTemporaryDisableTime", seconds
        )

    # --- users -------------------------------------------------------------------------

    def set_user(
        self,
        user_index: int,
        *,
        name: str | None = None,
        user_type: UserType | None = None,
        status: UserStatus | None = None,
        modify: bool = False,
    ) -> None:
        self._check_user_index(user_index)
        _check_user_fields(name, user_type, status)
        current = self._users.get(user_index)
        if modify:
            if current is None:
                raise KeypadError(KeypadStatus.INVALID_COMMAND, f"no user {user_index}")
            self._users[user_index] = _modified(current, name, user_type, status)
            return
        if current is not None:
            raise KeypadError(KeypadStatus.OCCUPIED, f"user {user_index} exists")
        self._users[user_index] = User(
            user_index,
            name or "",
            status or UserStatus.OCCUPIED_ENABLED,
            user_type if user_type is not None else UserType.UNRESTRICTED,
        )

    def get_user(self, user_index: int) -> User | None:
        self._check_user_index(user_index)
        return self._users.get(user_index)

    def clear_user(self, user_index: int) -> None:
        if user_index == CLEAR_ALL:
            for index in list(self._users):
                self._drop_user(index)
            return
        self._check_user_index(user_index)
        self._drop_user(user_index)

    # --- PIN credentials ---------------------------------------------------------------

    def set_pin(
        self, credential_index: int, pin: str, *, user_index: int | None, modify: bool = False
    ) -> PinSet:
        self._check_credential_index(credential_index)
        self._check_pin_format(pin)
        digest = self._digest(pin)
        if digest in self._digests:
            raise KeypadError(KeypadStatus.DUPLICATE, "that PIN is already in use")
        if modify:
            owner = self._modify_pin(credential_index, user_index, digest)
        else:
            owner = self._add_pin(credential_index, user_index, digest)
        return PinSet(owner, self._next_free_pin(credential_index))

    def get_pin(self, credential_index: int) -> PinCredential | None:
        self._check_credential_index(credential_index)
        return self._pins.get(credential_index)

    def clear_pin(self, credential_index: int) -> None:
        if credential_index == CLEAR_ALL:
            for index in list(self._pins):
                self._drop_pin(index)
            return
        self._check_credential_index(credential_index)
        self._drop_pin(credential_index)

    # --- schedules ---------------------------------------------------------------------

    def set_week_day_schedule(
        self, index: int, user_index: int, days: DaysMask, start: time, end: time
    ) -> None:
        self._check_schedule_slot(index, user_index, self.limits.week_day_schedules_per_user)
        self._check_user_exists(user_index)
        if int(days) == 0 or int(days) & 0x80:
            raise KeypadError(KeypadStatus.INVALID_COMMAND, "days mask must be 1..127")
        for moment in (start, end):
            if (moment.second, moment.microsecond) != (0, 0) or moment.tzinfo is not None:
                raise KeypadError(KeypadStatus.INVALID_COMMAND, "times are local hour:minute")
        if start >= end:
            raise KeypadError(KeypadStatus.INVALID_COMMAND, "start must be before end")
        schedule = WeekDaySchedule(index, user_index, DaysMask(int(days)), start, end)
        self._week_days[(user_index, index)] = schedule

    def get_week_day_schedule(self, index: int, user_index: int) -> WeekDaySchedule:
        self._check_schedule_slot(index, user_index, self.limits.week_day_schedules_per_user)
        return _found(self._week_days.get((user_index, index)), "week-day schedule")

    def clear_week_day_schedule(self, index: int, user_index: int) -> None:
        self._clear_schedules(
            self._week_days, index, user_index, self.limits.week_day_schedules_per_user
        )

    def set_year_day_schedule(
        self, index: int, user_index: int, local_start: int, local_end: int
    ) -> None:
        self._check_schedule_slot(index, user_index, self.limits.year_day_schedules_per_user)
        self._check_user_exists(user_index)
        if not 0 <= local_start < local_end <= 0xFFFFFFFF:
            raise KeypadError(KeypadStatus.INVALID_COMMAND, "need 0 <= start < end < 2**32")
        self._year_days[(user_index, index)] = YearDaySchedule(
            index, user_index, local_start, local_end
        )

    def get_year_day_schedule(self, index: int, user_index: int) -> YearDaySchedule:
        self._check_schedule_slot(index, user_index, self.limits.year_day_schedules_per_user)
        return _found(self._year_days.get((user_index, index)), "year-day schedule")

    def clear_year_day_schedule(self, index: int, user_index: int) -> None:
        self._clear_schedules(
            self._year_days, index, user_index, self.limits.year_day_schedules_per_user
        )

    # --- the keypad ----------------------------------------------------------------------

    def enter_code(self, pin: str, local_now: datetime) -> KeypadVerdict:
        """Judge a code typed at wall-clock time `local_now`; count it if it is wrong."""
        if self.locked_out:
            return KeypadVerdict(OperationError.RESTRICTED)
        credential_index = self._digests.get(self._digest(pin))
        if credential_index is None:
            return self._wrong_code()
        user = self._users[self._pins[credential_index].user_index]
        error = self._refusal(user, local_now)
        if error is None:
            self._wrong_codes = 0
        return KeypadVerdict(error, user.index)

    def record_use(self, user_index: int) -> None:
        """A granted code was acted on: a DISPOSABLE user is now spent."""
        user = self._users.get(user_index)
        if user is not None and user.user_type is UserType.DISPOSABLE:
            self._users[user_index] = replace(user, status=UserStatus.OCCUPIED_DISABLED)

    def end_lockout(self) -> None:
        """UserCodeTemporaryDisableTime has passed: codes are judged again."""
        self.locked_out = False

    # --- helpers -------------------------------------------------------------------------

    def _wrong_code(self) -> KeypadVerdict:
        self._wrong_codes += 1
        if self._wrong_codes < self.wrong_code_entry_limit:
            return KeypadVerdict(OperationError.INVALID_CREDENTIAL)
        self._wrong_codes = 0
        self.locked_out = True
        return KeypadVerdict(OperationError.INVALID_CREDENTIAL, lockout_engaged=True)

    def _refusal(self, user: User, local_now: datetime) -> OperationError | None:
        if user.status is not UserStatus.OCCUPIED_ENABLED:
            return OperationError.DISABLED_USER_DENIED
        if user.user_type is UserType.REMOTE_ONLY:
            return OperationError.RESTRICTED
        if not self._schedules_allow(user, local_now):
            return OperationError.RESTRICTED
        return None

    def _schedules_allow(self, user: User, local_now: datetime) -> bool:
        week = [s for (owner, _), s in self._week_days.items() if owner == user.index]
        year = [s for (owner, _), s in self._year_days.items() if owner == user.index]
        week_ok = any(s.covers(local_now) for s in week)
        year_ok = any(s.covers(local_now) for s in year)
        if user.user_type is UserType.WEEK_DAY_SCHEDULE:
            return week_ok
        if user.user_type is UserType.YEAR_DAY_SCHEDULE:
            return year_ok
        if user.user_type is UserType.SCHEDULE_RESTRICTED:
            return bool(week or year) and (week_ok or not week) and (year_ok or not year)
        return True

    def _add_pin(self, credential_index: int, user_index: int | None, digest: bytes) -> int:
        if credential_index in self._pins:
            raise KeypadError(KeypadStatus.OCCUPIED, f"PIN slot {credential_index} is taken")
        owner = self._new_user_index() if user_index is None else user_index
        user = self._pin_owner(owner, created=user_index is None)
        self._users[owner] = replace(
            user, credentials=tuple(sorted((*user.credentials, credential_index)))
        )
        self._store_pin(PinCredential(credential_index, owner), digest)
        return owner

    def _modify_pin(self, credential_index: int, user_index: int | None, digest: bytes) -> int:
        current = self._pins.get(credential_index)
        if current is None or user_index not in (None, current.user_index):
            raise KeypadError(KeypadStatus.INVALID_COMMAND, f"no such PIN {credential_index}")
        self._forget_digest(credential_index)
        self._store_pin(current, digest)
        return current.user_index

    def _pin_owner(self, user_index: int, *, created: bool) -> User:
        if created:
            return User(user_index, "", UserStatus.OCCUPIED_ENABLED, UserType.UNRESTRICTED)
        self._check_user_index(user_index)
        user = self._users.get(user_index)
        if user is None:
            raise KeypadError(KeypadStatus.INVALID_COMMAND, f"no user {user_index}")
        if len(user.credentials) >= self.limits.credentials_per_user:
            raise KeypadError(KeypadStatus.RESOURCE_EXHAUSTED, f"user {user_index} is full")
        return user

    def _new_user_index(self) -> int:
        for index in range(1, self.limits.total_users + 1):
            if index not in self._users:
                return index
        raise KeypadError(KeypadStatus.RESOURCE_EXHAUSTED, "every user slot is taken")

    def _next_free_pin(self, after: int) -> int | None:
        free = (i for i in range(after + 1, self.limits.pin_credentials + 1) if i not in self._pins)
        return next(free, None)

    def _store_pin(self, credential: PinCredential, digest: bytes) -> None:
        self._pins[credential.index] = credential
        self._digests[digest] = credential.index

    def _forget_digest(self, credential_index: int) -> None:
        self._digests = {d: i for d, i in self._digests.items() if i != credential_index}

    def _drop_pin(self, credential_index: int) -> None:
        credential = self._pins.pop(credential_index, None)
        if credential is None:
            return
        self._forget_digest(credential_index)
        user = self._users[credential.user_index]
        remaining = tuple(i for i in user.credentials if i != credential_index)
        if remaining:
            self._users[user.index] = replace(user, credentials=remaining)
        else:
            self._drop_user(user.index)  # Matter: a user's last credential takes it along

    def _drop_user(self, user_index: int) -> None:
        user = self._users.pop(user_index, None)
        if user is None:
            return
        for credential_index in user.credentials:
            self._pins.pop(credential_index, None)
            self._forget_digest(credential_index)
        self._week_days = {k: s for k, s in self._week_days.items() if k[0] != user_index}
        self._year_days = {k: s for k, s in self._year_days.items() if k[0] != user_index}

    def _clear_schedules(
        self,
        table: dict[tuple[int, int], _Schedule],
        index: int,
        user_index: int,
        per_user: int,
    ) -> None:
        if index != CLEAR_ALL_SCHEDULES:
            self._check_schedule_slot(index, user_index, per_user)
            table.pop((user_index, index), None)
            return
        self._check_user_index(user_index)
        for key in [key for key in table if key[0] == user_index]:
            del table[key]

    def _digest(self, pin: str) -> bytes:
        return hmac.new(self._key, pin.encode(), hashlib.sha256).digest()

    def _check_pin_format(self, pin: str) -> None:
        low, high = self.limits.min_pin_length, self.limits.max_pin_length
        if not (pin.isascii() and pin.isdigit() and low <= len(pin) <= high):
            raise KeypadError(KeypadStatus.INVALID_COMMAND, f"a PIN is {low} to {high} digits")

    def _check_user_index(self, user_index: int) -> None:
        _check_index("user", user_index, self.limits.total_users)

    def _check_credential_index(self, credential_index: int) -> None:
        _check_index("credential", credential_index, self.limits.pin_credentials)

    def _check_schedule_slot(self, index: int, user_index: int, per_user: int) -> None:
        _check_index("schedule", index, per_user)
        self._check_user_index(user_index)

    def _check_user_exists(self, user_index: int) -> None:
        if user_index not in self._users:
            raise KeypadError(KeypadStatus.FAILURE, f"no user {user_index}")


def _check_index(what: str, index: int, limit: int) -> None:
    if not 1 <= index <= limit:
        raise KeypadError(KeypadStatus.INVALID_COMMAND, f"{what} index must be 1..{limit}")


def _check_attribute(name: str, value: int) -> int:
    if not 1 <= value <= 255:
        raise KeypadError(KeypadStatus.CONSTRAINT_ERROR, f"{name} must be 1..255")
    return value


def _check_user_fields(
    name: str | None, user_type: UserType | None, status: UserStatus | None
) -> None:
    if name is not None and len(name) > MAX_USER_NAME_LENGTH:
        raise KeypadError(KeypadStatus.INVALID_COMMAND, "user name is too long")
    if user_type is not None and user_type not in SUPPORTED_USER_TYPES:
        raise KeypadError(KeypadStatus.INVALID_COMMAND, f"{user_type.name} is not supported")
    if status is UserStatus.AVAILABLE:
        raise KeypadError(KeypadStatus.INVALID_COMMAND, "status must be occupied")


def _modified(
    user: User, name: str | None, user_type: UserType | None, status: UserStatus | None
) -> User:
    return replace(
        user,
        name=user.name if name is None else name,
        user_type=user.user_type if user_type is None else user_type,
        status=user.status if status is None else status,
    )


def _found(schedule: _Schedule | None, what: str) -> _Schedule:
    if schedule is None:
        raise KeypadError(KeypadStatus.NOT_FOUND, f"no such {what}")
    return schedule
