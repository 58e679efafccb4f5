"""Grant, invitation, visit and provider bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import Field, field_validator

from doorstep.accounts.schemas import CurrentPassword, Email, Password
from doorstep.grants.models import AccessGrant, Method
from doorstep.grants.schedule import MAX_WINDOWS, ScheduleKind
from doorstep.schemas import Input, Output

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class WindowIn(Input):
    days: list[Weekday] = Field(min_length=1, max_length=7)
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["09:00"])
    end: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["17:00"])


class GrantCreate(Input):
    """A guest's access. Times are the home's wall clock (no offset), e.g.
    `2026-12-24T18:00:00`; windows are days of the week and HH:MM."""

    access_point: str = Field(min_length=1, max_length=32)
    label: str = Field(min_length=1, max_length=100, description="who, as the resident names them")
    kind: ScheduleKind
    method: Method = Method.APP
    email: str | None = Field(
        default=None,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="the guest's; required for the app",
    )
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    windows: list[WindowIn] = Field(default_factory=list, max_length=MAX_WINDOWS)
    uses_limit: int | None = Field(default=None, ge=1, le=10_000)
    require_geofence: bool = False
    pin: str | None = Field(
        default=None, pattern=r"^[0-9]{4,8}$", description="keypad only; chosen for you if empty"
    )
    notes: str = Field(default="", max_length=500)


class GrantRead(Output):
    id: str
    home_id: str
    access_point_id: str
    purpose: str
    method: str
    label: str
    grantee_id: str | None
    provider_id: str | None
    kind: str
    timezone: str
    starts_at: datetime | None
    ends_at: datetime | None
    windows: list[dict[str, Any]]
    uses_limit: int | None
    require_geofence: bool
    notes: str
    created_at: datetime
    revoked_at: datetime | None
    # Keypad codes and revocations: whether the door's hub has applied them.
    shadow_version: int | None = None
    enforced_at_hub: bool | None = None

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, value: Any) -> Any:
        return orjson.loads(value) if isinstance(value, str) else value

    @classmethod
    def of(cls, grant: AccessGrant, **extra: Any) -> GrantRead:
        return cls.model_validate(grant).model_copy(update=extra)


class GrantCreated(Output):
    grant: GrantRead
    pin: str | None = Field(default=None, description="the keypad code; shown this once")


class RevokeEverything(Input):
    """The resident's password again (and the six-digit code when two-step sign-in is
    on), as for a remote unlock: revoking everything is never done on a session alone."""

    password: CurrentPassword
    code: str | None = Field(default=None, max_length=32)


class RevokedEverything(Output):
    revoked: int


class InvitationAccept(Input):
    token: str = Field(min_length=20, max_length=100)
    password: Password
    name: str | None = Field(default=None, max_length=200)


class AccountRead(Output):
    id: str
    email: str
    name: str
    role: str


class VisitCreate(Input):
    grant_id: str = Field(min_length=1, max_length=32)
    device_key_id: str | None = Field(default=None, max_length=32)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0, le=10_000)


class ProviderCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    admin_email: str = Email
    admin_name: str = Field(min_length=1, max_length=200)
    admin_password: Password


class ProviderRead(Output):
    id: str
    name: str
    active: bool
    created_at: datetime


class WorkerInvite(Input):
    email: str = Email
    name: str = Field(min_length=1, max_length=200)


class MemberRead(Output):
    user_id: str
    role: str
    active: bool
    email: str = ""
    name: str = ""


class AppointmentCreate(Input):
    """A booking with a provider: one window on the home's wall clock, one door."""

    provider_id: str = Field(min_length=1, max_length=32)
    access_point: str = Field(min_length=1, max_length=32)
    starts_at: datetime
    ends_at: datetime
    label: str = Field(default="", max_length=100)
    notes: str = Field(default="", max_length=500)


class AssignWorker(Input):
    worker_id: str = Field(min_length=1, max_length=32)
