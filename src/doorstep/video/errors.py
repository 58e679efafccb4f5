"""The video package's errors, in the project's one `DoorstepError` tree."""

from __future__ import annotations

from doorstep.errors import DoorstepError, NotFound


class VideoError(DoorstepError):
    """ffmpeg could not be started, failed, or produced something unusable."""

    code = "video_error"
    status = 500


class CameraError(VideoError):
    code = "camera_error"


class RecorderError(VideoError):
    code = "recorder_error"


class ClipNotFound(NotFound):
    code = "clip_not_found"


class ClipKeyDestroyed(DoorstepError):
    """The clip's key is gone (deleted by the resident or by retention): its ciphertext,
    wherever a copy survives, can no longer be read."""

    code = "clip_key_destroyed"
    status = 410


class ClipIntegrityError(DoorstepError):
    """A stored clip failed authentication: changed, truncated, reordered, or read with
    another clip's key."""

    code = "clip_integrity"
    status = 500


class ClipStoreUnavailable(VideoError):
    """The object store refused or failed a request (after retries), or, checked at
    start, its bucket is missing or refuses the keys."""

    code = "clip_store_unavailable"
    status = 503
