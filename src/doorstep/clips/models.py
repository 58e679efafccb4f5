"""Clip rows (one per entry recording the hub uploaded) and each home's video settings.

A clip's bytes are never in the database: while uploading they are staged as files,
once stored they are ciphertext in the clip store and its key is wrapped in the key
store (see `clips.storage`). The row keeps what the timeline, the player and the privacy
scan need without decrypting anything.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime

DEFAULT_RETENTION_DAYS = 30


class ClipState(StrEnum):
    UPLOADING = "uploading"  # announced by the hub; parts still arriving
    STORED = "stored"  # checksums verified, encrypted, playable
    # Key destroyed, objects removed (by the resident or retention), or an upload given
    # up (abandoned, or superseded by another clip of its entry; `delete_reason`).
    DELETED = "deleted"


class ClipRecord(Base):
    __tablename__ = "clips"
    __table_args__ = (
        # One clip per entry: a hub that uploads twice resumes the same clip. Deleted
        # rows stay (a hub that announces one again is told so), and do not count.
        Index(
            "uq_clips_entry_id_live",
            "entry_id",
            unique=True,
            sqlite_where=text("state != 'deleted'"),
            postgresql_where=text("state != 'deleted'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the hub's clip id
    entry_id: Mapped[str] = mapped_column(ForeignKey("entries.id"), index=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    hub_id: Mapped[str] = mapped_column(String(32))
    access_point: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration: Mapped[float] = mapped_column(Float)
    complete: Mapped[bool] = mapped_column(Boolean)
    # The recorder's own account of the clip (armed_at, disarmed_at, stop_at, gaps).
    recording: Mapped[dict[str, Any]] = mapped_column(JSON)
    video_size: Mapped[int] = mapped_column(BigInteger)
    video_sha256: Mapped[str] = mapped_column(String(64))
    thumbnail_size: Mapped[int] = mapped_column(Integer)
    thumbnail_sha256: Mapped[str] = mapped_column(String(64))
    # Drop-zone motion analysis (`video.motion`), once run; null without a drop zone.
    motion_beyond_zone: Mapped[bool | None] = mapped_column(Boolean)
    motion_seconds: Mapped[float | None] = mapped_column(Float)
    motion_beyond_seconds: Mapped[float | None] = mapped_column(Float)
    presence_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stored_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delete_reason: Mapped[str | None] = mapped_column(String(16))


class HomeVideo(Base):
    """A home's clip key (wrapped by the deployment's master key), retention and drop zone."""

    __tablename__ = "home_video"

    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(64))
    retention_days: Mapped[int] = mapped_column(Integer, default=DEFAULT_RETENTION_DAYS)
    # [[x, y], ...] in normalized picture coordinates (`video.motion.Zone`), or null.
    drop_zone: Mapped[list[list[float]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
