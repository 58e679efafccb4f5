"""Delivery and package tables, and the carriers' idempotency keys on bookings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime


class DeliveryStatus(StrEnum):
    BOOKED = "booked"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    carrier_id: Mapped[str] = mapped_column(ForeignKey("carriers.id"), index=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    access_point_id: Mapped[str] = mapped_column(ForeignKey("access_points.id"))
    courier_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    reference: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.BOOKED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Package(Base):
    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("delivery_id", "barcode"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"), index=True)
    barcode: Mapped[str] = mapped_column(String(100), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BookingKey(Base):
    """A carrier's `Idempotency-Key` on a booking, and the booking it made: written in the
    same transaction, kept for a day (`service.book_once`). The primary key decides
    between two requests sent at once with the same key."""

    __tablename__ = "booking_keys"
    __table_args__ = (Index("ix_booking_keys_carrier_created", "carrier_id", "created_at"),)

    carrier_id: Mapped[str] = mapped_column(ForeignKey("carriers.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request: Mapped[str] = mapped_column(String(64))  # `idempotency.fingerprint` of the body
    # Empty only inside the transaction that claimed the key and is booking.
    delivery_id: Mapped[str | None] = mapped_column(ForeignKey("deliveries.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
