"""Home, access point, hub and carrier-permission tables."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime

ALL_WEEKDAYS = 0b1111111


class Home(Base):
    __tablename__ = "homes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    geofence_m: Mapped[float] = mapped_column(Float, default=75.0)
    timezone: Mapped[str] = mapped_column(String(64))
    in_home_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Delivery preferences (migration 0004). Weekdays as a bit mask, bit 0 = Monday
    # (Python's `weekday()`), in the home's own time zone.
    allowed_weekdays: Mapped[int] = mapped_column(Integer, default=ALL_WEEKDAYS)
    approval_mode: Mapped[str] = mapped_column(String(16), default="auto")
    approval_timeout_seconds: Mapped[int] = mapped_column(Integer, default=120)
    pet_notes: Mapped[str] = mapped_column(String(500), default="")
    placement_notes: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApprovalMode(StrEnum):
    AUTO = "auto"  # every check passes: the door opens
    ASK = "ask"  # the resident approves or declines each entry, within a time limit
    NEVER = "never"  # no in-home delivery at all


class ClosureKind(StrEnum):
    VACATION = "vacation"
    BLACKOUT = "blackout"
    NOT_TODAY = "not_today"


class HomeClosure(Base):
    """Days (in the home's time zone, inclusive) when nobody may come in to deliver."""

    __tablename__ = "home_closures"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Hub(Base):
    __tablename__ = "hubs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    claim_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    broker_password_hash: Mapped[str | None] = mapped_column(String(200))
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    # X25519 key keypad codes are sealed to (`protocol.seal`); migration 0009.
    seal_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    epoch: Mapped[int | None] = mapped_column(Integer)
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccessPoint(Base):
    __tablename__ = "access_points"
    __table_args__ = (UniqueConstraint("home_id", "slug"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    hub_id: Mapped[str | None] = mapped_column(ForeignKey("hubs.id"), index=True)
    slug: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="door")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HomeCarrier(Base):
    """A carrier the resident has allowed to book in-home deliveries to this home."""

    __tablename__ = "home_carriers"

    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), primary_key=True)
    carrier_id: Mapped[str] = mapped_column(ForeignKey("carriers.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
