"""Account request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

from doorstep.schemas import Input, Output

Email = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
# A password is kept exactly as typed, spaces at its ends included, whatever the body's
# `str_strip_whitespace`: sign-in compares it unstripped.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=10, max_length=200)]
CurrentPassword = Annotated[
    str, StringConstraints(strip_whitespace=False, min_length=1, max_length=200)
]


class ResidentCreate(Input):
    email: str = Email
    name: str = Field(min_length=1, max_length=200)
    password: Password


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

    current_password: CurrentPassword
    new_password: Password
    code: str | None = Field(default=None, max_length=32)


class NewPassword(Input):
    """A password chosen on a form (the sign-up rules), kept as typed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    password: Password


class PasswordChanged(Output):
    sessions_ended: int  # other sessions and API tokens of the account, now ended


class Reauthentication(Input):
    """The signed-in person's password again (and the code, with two-step sign-in on)."""

    password: CurrentPassword
    code: str | None = Field(default=None, max_length=32)


class TwoFactorCode(Input):
    code: str = Field(min_length=1, max_length=32)


class TwoFactorPending(Output):
    secret: str  # base32, for typing into the app by hand
    otpauth_uri: str  # the same key, for a QR code


class TwoFactorOn(Output):
    recovery_codes: list[str]  # shown this once; each works once instead of a code
    sessions_ended: int  # other sessions and API tokens of the account, now ended
