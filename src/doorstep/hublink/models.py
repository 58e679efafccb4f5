"""Hub event and stream tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, ForeignKeyConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime


class HubEvent(Base):
    __tablename__ = "hub_events"

    hub_id: Mapped[str] = mapped_column(ForeignKey("hubs.id"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    ts: Mapped[float] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    sig: Mapped[str] = mapped_column(String(128))
    entry_id: Mapped[str | None] = mapped_column(String(32), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HubStream(Base):
    """How far each (hub, boot epoch) stream is contiguous, hence acknowledgeable."""

    __tablename__ = "hub_streams"

    hub_id: Mapped[str] = mapped_column(ForeignKey("hubs.id"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    through_seq: Mapped[int] = mapped_column(Integer, default=0)
    max_seq: Mapped[int] = mapped_column(Integer, default=0)


class HubEventFailure(Base):
    """A stored hub event whose effects failed; applied again until they hold
    (`hublink.service.retry_failed_effects`). `next_at` NULL: given up, kept for the
    operator."""

    __tablename__ = "hub_event_failures"
    __table_args__ = (
        ForeignKeyConstraint(
            ["hub_id", "epoch", "seq"], ["hub_events.hub_id", "hub_events.epoch", "hub_events.seq"]
        ),
    )

    hub_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    error: Mapped[str] = mapped_column(String(300))
