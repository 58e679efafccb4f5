"""Stable reason codes: why an entry was denied or a command refused.

They travel over MQTT (hub refusals), appear in API error bodies and in the audit log,
and never change meaning once released. Add new ones; do not rename.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # Courier entry checks, in the order DESIGN "Courier entry" runs them.
    COURIER_NOT_ASSIGNED = "courier_not_assigned"
    COURIER_INACTIVE = "courier_inactive"
    PACKAGE_UNKNOWN = "package_unknown"
    PACKAGE_ALREADY_DELIVERED = "package_already_delivered"
    IN_HOME_DISABLED = "in_home_disabled"
    DEVICE_KEY_REQUIRED = "device_key_required"
    WEEKDAY_NOT_ALLOWED = "weekday_not_allowed"
    VACATION = "vacation"
    BLACKOUT_DAY = "blackout_day"
    NOT_TODAY = "not_today"
    OUTSIDE_WINDOW = "outside_window"
    OUTSIDE_GEOFENCE = "outside_geofence"
    HUB_OFFLINE = "hub_offline"
    LOCK_NOT_READY = "lock_not_ready"
    ENTRY_IN_PROGRESS = "entry_in_progress"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    SOMEONE_ANSWERED = "someone_answered"
    COURIER_HELD = "courier_held"
    COURIER_ABORTED = "courier_aborted"
    RESIDENT_DECLINED = "resident_declined"
    APPROVAL_TIMEOUT = "approval_timeout"
    HUB_TIMEOUT = "hub_timeout"
    # Decided in the writer process, which died before its answer came back: the unlock
    # was never sent. The entry ends so that it does not hold the door.
    SERVICE_RESTARTED = "service_restarted"
    # Committed after the courier's request had stopped waiting for it (the database
    # answered too late, or the request was cancelled): the unlock was never sent.
    REQUEST_ABANDONED = "request_abandoned"
    DOOR_NEVER_OPENED = "door_never_opened"

    # Guest and provider visits on an access grant (`doorstep.access.visits`).
    NOT_GRANTED = "not_granted"  # no such grant for this person (or no worker assigned)
    VISITOR_INACTIVE = "visitor_inactive"  # account, worker or provider deactivated
    GRANT_REVOKED = "grant_revoked"
    PROVIDER_BLOCKED = "provider_blocked"  # the resident blocked this provider
    OUTSIDE_SCHEDULE = "outside_schedule"
    USES_EXHAUSTED = "uses_exhausted"

    # Hub-side refusals of a command or grant (the actuator is never reached).
    BAD_MESSAGE = "bad_message"
    UNSUPPORTED_VERSION = "unsupported_version"
    COMMAND_EXPIRED = "command_expired"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_ALGORITHM = "token_algorithm"
    TOKEN_UNKNOWN_KEY = "token_unknown_key"
    TOKEN_SIGNATURE = "token_signature"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    TOKEN_AUDIENCE = "token_audience"
    TOKEN_SCOPE = "token_scope"
    TOKEN_REPLAYED = "token_replayed"
    TOKEN_ENTRY_MISMATCH = "token_entry_mismatch"
    PROOF_REQUIRED = "proof_required"  # the grant names a phone key; no signature came
    PROOF_INVALID = "proof_invalid"  # not that key's signature over this challenge
    PROOF_STALE = "proof_stale"  # no live challenge for this entry (expired, used, unknown)
    LOCK_JAMMED = "lock_jammed"
    DOOR_OPEN = "door_open"
    CAMERA_NOT_LIVE = "camera_not_live"  # camera first: no live camera, no unlock
    ACTUATOR_FAILED = "actuator_failed"
    TOKEN_REVOKED = "token_revoked"  # the token id is in the hub's desired revocation list
    ENTRY_ENDED = "entry_ended"  # a lock command ended this entry before its unlock came
    # The hub's journal cannot write (its disk is full or failing): the token could not
    # be recorded as spent, so the door stays locked.
    HUB_STORAGE_FAILED = "hub_storage_failed"

    # Hub-side refusals of a desired (shadow) document (`protocol.shadow`); nothing changes.
    SHADOW_MALFORMED = "shadow_malformed"
    SHADOW_UNKNOWN_KEY = "shadow_unknown_key"
    SHADOW_SIGNATURE = "shadow_signature"
    SHADOW_WRONG_HUB = "shadow_wrong_hub"
    SHADOW_STALE = "shadow_stale"  # a version at or below the one already applied


# The hub could not check the entry (its clock, keys or software disagree with the
# service's): retrying will not help.
_DOOR_CANNOT_CHECK = "The door could not check this entry; leave it at the door and tell dispatch."

# What the courier is told to do instead, per denial or refusal (every reason an entry
# can end with; the shadow refusals end none). Shown verbatim in the courier app.
COURIER_ADVICE: dict[Reason, str] = {
    Reason.COURIER_NOT_ASSIGNED: "This stop is assigned to another courier; return the parcel.",
    Reason.COURIER_INACTIVE: "Your account cannot make in-home deliveries; return the parcel.",
    Reason.PACKAGE_UNKNOWN: "This parcel is not for an in-home delivery here; check the address.",
    Reason.PACKAGE_ALREADY_DELIVERED: "This parcel was already delivered.",
    Reason.DEVICE_KEY_REQUIRED: "This phone is not registered for entries; sign in again on "
    "it, then retry.",
    Reason.PROOF_INVALID: "This phone could not prove it holds the key; sign in again.",
    Reason.PROOF_STALE: "The door's challenge expired; request entry again.",
    Reason.IN_HOME_DISABLED: "In-home delivery is off here today; leave it at the door.",
    Reason.WEEKDAY_NOT_ALLOWED: "The resident takes no in-home delivery on this weekday; "
    "leave it at the door.",
    Reason.VACATION: "The resident is away; use the locker or return the parcel.",
    Reason.BLACKOUT_DAY: "No in-home delivery here today; leave it at the door.",
    Reason.NOT_TODAY: "The resident asked for no in-home delivery today; leave it at the door.",
    Reason.OUTSIDE_WINDOW: "You are outside the delivery window; leave it at the door.",
    Reason.OUTSIDE_GEOFENCE: "You do not appear to be at this address; move to the door and retry.",
    Reason.HUB_OFFLINE: "The home's hub is offline; leave it at the door.",
    Reason.LOCK_NOT_READY: "The lock is not ready; leave it at the door.",
    Reason.ENTRY_IN_PROGRESS: "Another entry is open at this door; wait, then retry.",
    Reason.COURIER_HELD: "Your last in-home stop did not relock; call dispatch before the "
    "next one. Leave this parcel at the door.",
    Reason.SOMEONE_ANSWERED: "Someone is home: hand the parcel over instead.",
    Reason.COURIER_ABORTED: "Entry called off; leave the parcel at the door, use the locker "
    "or return it.",
    Reason.TOO_MANY_ATTEMPTS: "Too many entry attempts; leave it at the door and contact "
    "your dispatcher.",
    Reason.RESIDENT_DECLINED: "The resident declined in-home delivery; leave it at the door.",
    Reason.APPROVAL_TIMEOUT: "The resident did not answer in time; leave it at the door.",
    Reason.CAMERA_NOT_LIVE: "The home's camera is not recording; leave it at the door.",
    Reason.HUB_TIMEOUT: "The door did not answer in time; leave it at the door.",
    Reason.DOOR_NEVER_OPENED: "The door relocked before it was opened; request entry again.",
    # Ended before the door was asked (`access.service.end_unsent`): nothing is wrong at
    # the home, so asking again is the advice.
    Reason.SERVICE_RESTARTED: "The service restarted before the door was asked; request "
    "entry again.",
    Reason.REQUEST_ABANDONED: "The service answered too late and the door was not asked; "
    "request entry again.",
    # The hub's refusals: the door stays locked.
    Reason.LOCK_JAMMED: "The lock is jammed; leave it at the door.",
    Reason.DOOR_OPEN: "The door is not shut and locked, so no entry can start; do not go "
    "in. Leave it at the door.",
    Reason.ACTUATOR_FAILED: "The lock did not open; leave it at the door.",
    Reason.ENTRY_ENDED: "This entry was already called off, so the door stayed locked.",
    Reason.HUB_STORAGE_FAILED: "The door cannot record entries right now, so it stayed "
    "locked; leave it at the door.",
    Reason.PROOF_REQUIRED: "The door got no answer from this phone; request entry again.",
    Reason.COMMAND_EXPIRED: "The door got the request too late; request entry again.",
    Reason.TOKEN_EXPIRED: "This entry's pass expired before the door used it; request entry again.",
    Reason.TOKEN_REPLAYED: "This entry's pass was already used; request entry again.",
    Reason.TOKEN_REVOKED: "This entry was withdrawn; leave it at the door.",
    Reason.TOKEN_NOT_YET_VALID: _DOOR_CANNOT_CHECK,
    Reason.TOKEN_MALFORMED: _DOOR_CANNOT_CHECK,
    Reason.TOKEN_ALGORITHM: _DOOR_CANNOT_CHECK,
    Reason.TOKEN_UNKNOWN_KEY: _DOOR_CANNOT_CHECK,
    Reason.TOKEN_SIGNATURE: _DOOR_CANNOT_CHECK,
    Reason.TOKEN_AUDIENCE: _DOOR_CANNOT_CHECK,
    Reason.TOKEN_SCOPE: _DOOR_CANNOT_CHECK,
    Reason.TOKEN_ENTRY_MISMATCH: _DOOR_CANNOT_CHECK,
    Reason.BAD_MESSAGE: _DOOR_CANNOT_CHECK,
    Reason.UNSUPPORTED_VERSION: _DOOR_CANNOT_CHECK,
    Reason.NOT_GRANTED: "You have no access here; ask the resident.",
    Reason.VISITOR_INACTIVE: "Your account cannot open this door; ask the resident or your "
    "organisation.",
    Reason.GRANT_REVOKED: "The resident has withdrawn this access.",
    Reason.PROVIDER_BLOCKED: "The resident no longer admits this provider.",
    Reason.OUTSIDE_SCHEDULE: "Your access does not cover this time; check its schedule.",
    Reason.USES_EXHAUSTED: "This access has been used as many times as it allows.",
}


def advice_for(reason: str | None) -> str | None:
    """The sentence the courier sees for a denial reason, if it has one."""
    try:
        return COURIER_ADVICE.get(Reason(reason)) if reason else None
    except ValueError:
        return None
