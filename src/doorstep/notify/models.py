"""Outbox and webhook endpoint tables."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class WebhookEndpoint(Base):
    """Where a carrier wants entry events. The secret signs them (HMAC-SHA256), so it is
    kept sealed (`sealing`), not hashed: the dispatcher must read it; it is shown to the
    carrier once and never logged."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    carrier_id: Mapped[str] = mapped_column(ForeignKey("carriers.id"), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_due",
            "next_attempt_at",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    # webhook: the endpoint id (its URL and secret are read at send time, so a rotated
    # secret or a disabled endpoint applies to messages still queued); email: the address.
    target: Mapped[str] = mapped_column(String(320))
    # Once sent, failed or skipped, an email's keeps only its subject and ids
    # (`dispatcher._kept`).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # pending, sent, failed, or skipped (the channel is not configured here)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
