"""What the hub sends when it uploads a clip, and what residents read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Part = Literal["video", "thumbnail"]
PARTS: tuple[Part, ...] = ("video", "thumbnail")
MAX_VIDEO_BYTES = 2 * 1024**3
MAX_THUMBNAIL_BYTES = 1024**2


class PartInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=1, le=MAX_VIDEO_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ThumbnailInfo(PartInfo):
    """A thumbnail is one small JPEG: it is decrypted whole into memory to be served."""

    size: int = Field(ge=1, le=MAX_THUMBNAIL_BYTES)


class ClipAnnounce(BaseModel):
    """The recorder's `video.clips.Clip`, without its files (times are Unix seconds)."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    entry_id: str = Field(min_length=1, max_length=32)
    access_point: str = Field(min_length=1, max_length=32)
    started_at: float
    ended_at: float
    duration: float = Field(ge=0, le=24 * 3600)
    armed_at: float
    disarmed_at: float
    stop_at: float
    gaps: list[tuple[float, float]] = Field(default_factory=list, max_length=1000)
    complete: bool
    video: PartInfo
    thumbnail: ThumbnailInfo


class UploadStatus(BaseModel):
    clip_id: str
    state: str
    received: dict[str, int]  # bytes the service holds of each part


class MotionRead(BaseModel):
    beyond_zone: bool
    motion_seconds: float
    beyond_seconds: float
    presence_seconds: float


class ClipRead(BaseModel):
    id: str
    entry_id: str
    access_point: str
    state: str
    started_at: datetime
    ended_at: datetime
    duration: float
    complete: bool
    size: int
    motion: MotionRead | None


class VideoSettingsRead(BaseModel):
    retention_days: int
    drop_zone: list[tuple[float, float]] | None


class VideoSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention_days: int | None = Field(default=None, ge=1, le=3650)
    drop_zone: list[tuple[float, float]] | None = Field(default=None, min_length=3, max_length=64)


class LiveUrlRead(BaseModel):
    url: str
    expires_at: datetime
