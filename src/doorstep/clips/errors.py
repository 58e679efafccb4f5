"""The clip service's errors (codes travel to the hub and to the resident's client)."""

from __future__ import annotations

from doorstep.errors import Conflict, DoorstepError, InvalidRequest, NotAuthenticated


class HubNotAuthenticated(NotAuthenticated):
    code = "hub_not_authenticated"


class UploadOffsetMismatch(Conflict):
    """The chunk does not start where the service's copy ends: resume from `received`."""

    code = "upload_offset_mismatch"


class ClipChecksumMismatch(DoorstepError):
    """The assembled part is not the bytes the hub announced; the part starts over."""

    code = "clip_checksum_mismatch"
    status = 422


class ClipOutsideEntry(InvalidRequest):
    """The clip's time range is not inside its entry's recording window."""

    code = "clip_outside_entry"


class RangeNotSatisfiable(DoorstepError):
    code = "range_not_satisfiable"
    status = 416
