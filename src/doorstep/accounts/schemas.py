"""Account request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

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
