"""Message schemas on the service <-> hub topics, version `PROTOCOL_VERSION`.

All payloads are JSON objects. Binary values (grants) are base64url without padding.

    cmd     {v, command_id, kind, not_after, entry_id?, access_point?, grant?}
            kind `lock`: the grant's scope is "lock"; `entry_id` is the grant's
            (the resident's own open entry when the lock ends it, else a fresh id)
    reply   {command_id, result: ok|refused|error, reason?, seqs: [int]}
    events  {hub, epoch, seq, event_id, ts, kind, data, prev_hash, sig}
    ack     {epoch, through_seq}
    status  {state: online|offline, epoch?}

An event's `sig` is the hub's Ed25519 signature (base64url) over the canonical JSON of
the event without `sig`; `prev_hash` is the SHA-256 (hex) of the previous event's
canonical JSON including its `sig`, so each hub's journal is a hash chain.
"""

from __future__ import annotations

import base64
import hashlib
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_BYTES = 64 * 1024
GENESIS_HASH = "0" * 64


class CommandKind(StrEnum):
    CHALLENGE = "challenge"  # verify the grant, answer a fresh challenge for the phone key
    UNLOCK = "unlock"
    LOCK = "lock"
    REPLAY = "replay"


class EventKind(StrEnum):
    HUB_STARTED = "hub.started"
    # A command the hub would not carry out: data.reason, and for a command it could
    # read, command_id, kind, entry_id and access_point (the door the command names).
    COMMAND_REFUSED = "command.refused"
    LOCK_UNLOCKED = "lock.unlocked"
    LOCK_LOCKED = "lock.locked"
    LOCK_JAMMED = "lock.jammed"
    LOCK_ERROR = "lock.error"
    DOOR_OPENED = "door.opened"
    DOOR_CLOSED = "door.closed"
    DOOR_FORCED = "door.forced_open"
    LOCK_ALARM = "lock.alarm"  # any other Matter DoorLockAlarm (wrong-code limit, ...)
    ENTRY_SECURED = "entry.secured"
    # The outcome of a remote `lock` command the hub accepted: data.command_id,
    # access_point, result (locked | failed), reason (when failed), lock_state and
    # door_state (Matter values) as the hub verified them, entry_id (when it ended the
    # resident's own entry). A refused command is a COMMAND_REFUSED, as for any command.
    LOCK_COMMAND = "lock.command"
    ENTRY_ALERT = "entry.alert"  # data.alert: one of the `Alert` values
    CLIP_RECORDED = "clip.recorded"  # an entry's clip is assembled on the hub
    # A code typed at a lock's keypad was refused (data.error: Matter OperationError; never
    # the code). The wrong-code lockout itself is a LOCK_ALARM (alarm 4).
    KEYPAD_REFUSED = "keypad.refused"
    SHADOW_APPLIED = "shadow.applied"  # data: version, credentials {id: state}
    SHADOW_REFUSED = "shadow.refused"  # data.reason: a `Reason` SHADOW_* code


class Alert(StrEnum):
    """What the hub raises during an entry when the door is not where it should be."""

    RELOCK_FAILED = "relock_failed"  # door shut, but not locked by the deadline
    DOOR_HELD_OPEN = "door_held_open"  # open longer than the limit
    LOCKED_WHILE_OPEN = "locked_while_open"  # the bolt says locked, the sensor says open
    CAMERA_LOST = "camera_lost"  # the camera stalled or froze during the entry


class _Message(BaseModel):
    # Strict: a wire value is taken only as its own JSON type (`"v": true` is not version
    # 1, nor `"not_after": "1800000030"` a time); unknown fields are refused.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Command(_Message):
    v: int
    command_id: str = Field(min_length=8, max_length=64)
    kind: CommandKind
    not_after: int
    entry_id: str | None = Field(default=None, max_length=64)
    access_point: str | None = Field(default=None, max_length=64)
    grant: str | None = Field(default=None, max_length=2048)
    # The phone's ES256 signature (r||s, base64url) of the hub's challenge (`protocol.pop`).
    proof: str | None = Field(default=None, max_length=128)
    from_epoch: int | None = None
    from_seq: int | None = None


class Reply(_Message):
    command_id: str
    result: Literal["ok", "refused", "error"]
    reason: str | None = None
    seqs: list[int] = Field(default_factory=list)
    challenge: str | None = None  # base64url; the answer to a `challenge` command


class Event(_Message):
    hub: str
    epoch: int = Field(ge=1)
    seq: int = Field(ge=1)
    event_id: str
    ts: float
    kind: str
    data: dict[str, Any]
    prev_hash: str = Field(min_length=64, max_length=64)
    sig: str = ""

    def signing_bytes(self) -> bytes:
        return canonical(self.model_dump(exclude={"sig"}))

    def chain_hash(self) -> str:
        return hashlib.sha256(canonical(self.model_dump())).hexdigest()


class Ack(_Message):
    epoch: int
    through_seq: int


class CameraBeat(_Message):
    """The hub's camera during an entry, about once a second: frames received so far and
    a hash of the latest picture. Not journalled: its absence is the signal."""

    entry_id: str = Field(max_length=64)
    access_point: str = Field(max_length=64)
    state: str = Field(max_length=16)
    frames: int = Field(ge=0)
    frame_hash: str | None = Field(default=None, max_length=64)


class Status(_Message):
    state: Literal["online", "offline"]
    epoch: int | None = None


def canonical(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces. What signatures and hashes cover."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
