"""Entry bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from doorstep.accounts.schemas import CurrentPassword
from doorstep.schemas import Input, Output


class EntryCreate(Input):
    delivery_id: str = Field(min_length=1, max_length=32)
    barcode: str = Field(min_length=1, max_length=100)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(ge=0, le=10_000)
    # The knock step: the courier knocked or rang and nobody came. Someone answering means
    # the parcel is handed over, not taken in.
    nobody_answered: bool
    # The phone key registered at sign-in (`/v1/courier/device-keys`); the grant names it.
    device_key_id: str | None = Field(default=None, max_length=32)


class EntryRead(Output):
    id: str
    state: str
    reason: str | None
    advice: str | None = None
    delivery_id: str | None
    home_id: str | None
    hub_id: str | None
    created_at: datetime
    unlocked_at: datetime | None
    opened_at: datetime | None
    closed_at: datetime | None
    locked_at: datetime | None
    done_at: datetime | None
    challenge: str | None = None
    to_sign: str | None = None
    alert: str | None = None
    # Who came and how: a delivery, or a guest's or provider's visit on a grant, by the
    # app or a keypad code (on reads of a stored entry).
    purpose: str | None = None
    method: str | None = None
    grant_id: str | None = None


class EntryProof(Input):
    proof: str = Field(min_length=80, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")


class EntryAbort(Input):
    """The courier stops the entry (a dog at the door, someone inside, anything unsafe);
    no penalty, the parcel goes the fallback way."""

    reason: Literal["pet", "person", "unsafe", "other"]
    note: str = Field(default="", max_length=300)


class ApprovalAnswer(Input):
    decision: Literal["approve", "decline"]


class RemoteUnlock(Input):
    """The resident's password again (and the six-digit code when two-step sign-in is
    on): unlocking from afar is never done on a session alone."""

    password: CurrentPassword
    code: str | None = Field(default=None, max_length=32)
