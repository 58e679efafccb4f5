"""Delivery and package tables."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, UniqueConstraint
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
