"""Delivery bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, Field

from doorstep.schemas import Input, Output

Barcode = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")


class PackageIn(Input):
    barcode: str = Barcode


class DeliveryCreate(Input):
    home_id: str = Field(min_length=1, max_length=32)
    courier_id: str = Field(min_length=1, max_length=32)
    window_start: AwareDatetime
    window_end: AwareDatetime
    packages: list[PackageIn] = Field(min_length=1, max_length=50)
    access_point: str | None = Field(default=None, max_length=32)
    reference: str = Field(default="", max_length=100)


class PackageRead(Output):
    id: str
    barcode: str
    delivered_at: datetime | None


class DeliveryRead(Output):
    id: str
    carrier_id: str
    home_id: str
    courier_id: str
    window_start: datetime
    window_end: datetime
    reference: str
    status: str
    packages: list[PackageRead] = Field(default_factory=list)


class StopRead(Output):
    delivery_id: str
    home_name: str
    address: str
    latitude: float
    longitude: float
    window_start: datetime
    window_end: datetime
    barcodes: list[str]
    # Shown to the courier before entering: pets to mind, where the parcel goes, and
    # whether the resident approves each entry ("ask": expect a short wait at the door).
    pet_notes: str = ""
    placement_notes: str = ""
    approval_mode: str = "auto"
