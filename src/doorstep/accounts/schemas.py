"""Account request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from doorstep.schemas import Input, Output

Email = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
Password = Field(min_length=10, max_length=200)


class ResidentCreate(Input):
    email: str = Email
    name: str = Field(min_length=1, max_length=200)
    password: str = Password


class CourierCreate(ResidentCreate):
    pass


class CarrierCreate(Input):
    name: str = Field(min_length=1, max_length=200)


class UserRead(Output):
    id: str
    email: str
    name: str
    role: str
    carrier_id: str | None
    created_at: datetime


class CarrierCreated(Output):
    id: str
    name: str
    client_id: str
    client_secret: str


class TokenRead(Output):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class PasswordChange(Input):
    """The current password (and the code, with two-step sign-in on) and the new one,
    which follows the sign-up rules. Kept as typed: sign-in compares passwords unstripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Password
    code: str | None = Field(default=None, max_length=32)


class NewPassword(Input):
    """A password chosen on a form (the sign-up rules), kept as typed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    password: str = Password


class PasswordChanged(Output):
    sessions_ended: int  # other sessions and API tokens of the account, now ended
