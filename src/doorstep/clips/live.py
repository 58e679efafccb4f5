"""Live view during an entry: JPEG frames from the hub, relayed to the resident as MJPEG.

Hub to service: the hub long-polls `GET /v1/hub/live/wanted` (signed with its key, see
`protocol.hubauth`); the answer lists its doors that someone is watching. For each, the
hub decodes the recorder's newest segments (one GOP each, so about a second behind the
camera) into JPEG frames and posts them one by one (`POST /v1/hub/live/{door}/frame`,
signed); each answer says whether anyone is still watching, and the hub stops when
nobody is. Nothing is sent while nobody watches.

Service to browser: `multipart/x-mixed-replace` (MJPEG), which an `<img>` plays with no
script. It is opened with a short-lived signed URL:

    /v1/live/<entry id>?viewer=<user id>&exp=<unix>&sig=<base64url HMAC-SHA256>

HMAC over "live|<viewer>|<entry>|<exp>" with a key kept in `<data dir>/keys/live-url.key`;
valid at most `URL_TTL_SECONDS` (60 s) to open, bound to the resident and the entry; at
opening the resident must still own the home and the entry must still be open. The
stream then runs until the viewer leaves, the entry ends or the hub goes quiet. Each
opening is audited (`live:viewed`). The URL is never logged.

The relay holds the latest frame of each watched door in memory, on the event loop (a
frame of a door nobody watches is dropped, and a door's last frame goes with its last
viewer): a viewer must reach the service process its hub posts to (one `serve` process,
or sticky routing).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

URL_TTL_SECONDS = 60
KEY_FILE = "live-url.key"
BOUNDARY = "doorstep-frame"
QUIET_SECONDS = 20.0  # a stream with no new frame for this long ends
MAX_FRAME_BYTES = 512 * 1024


def load_or_create_key(directory: Path) -> bytes:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        secret = os.urandom(32)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(descriptor, "wb") as file:
            file.write(secret)
        return secret


def _mac(key: bytes, viewer: str, entry_id: str, expires: int) -> str:
    message = f"live|{viewer}|{entry_id}|{expires}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed_url(key: bytes, *, viewer: str, entry_id: str, now: float) -> tuple[str, int]:
    """The live URL of `entry_id` for `viewer`, and when it stops opening (Unix)."""
    expires = int(now) + URL_TTL_SECONDS
    query = urlencode(
        {"viewer": viewer, "exp": expires, "sig": _mac(key, viewer, entry_id, expires)}
    )
    return f"/v1/live/{entry_id}?{query}", expires


def check_url(
    key: bytes, *, viewer: str, entry_id: str, expires: int, sig: str, now: float
) -> bool:
    """The signature holds (constant-time) and the URL is still within its short life."""
    if not (now <= expires <= now + URL_TTL_SECONDS):
        return False
    return hmac.compare_digest(_mac(key, viewer, entry_id, expires), sig)


@dataclass
class _Channel:
    viewers: int = 0
    seq: int = 0
    frame: bytes = b""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class LiveRelay:
    """Latest frames per (hub, door) and who watches them. Event loop only."""

    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._wanted: dict[str, asyncio.Event] = {}

    def wanted(self, hub_id: str) -> list[str]:
        return sorted(
            point for (hub, point), ch in self._channels.items() if hub == hub_id and ch.viewers
        )

    async def wait_wanted(self, hub_id: str, timeout: float) -> list[str]:
        """The hub's watched doors, waiting up to `timeout` for a first viewer."""
        if not self.wanted(hub_id):
            event = self._wanted.setdefault(hub_id, asyncio.Event())
            event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        return self.wanted(hub_id)

    async def publish(self, hub_id: str, access_point: str, frame: bytes) -> bool:
        """Hand a frame to the door's viewers; whether anyone is watching. A frame of a
        door nobody watches is dropped: the door is the hub's word, and the relay holds
        frames only of doors a resident opened (a hub naming ever new doors would
        otherwise fill the service's memory)."""
        channel = self._channels.get((hub_id, access_point))
        if channel is None or not channel.viewers:
            return False
        async with channel.changed:
            channel.seq += 1
            channel.frame = frame
            channel.changed.notify_all()
        return channel.viewers > 0

    async def watch(self, hub_id: str, access_point: str) -> AsyncIterator[bytes]:
        """The door's frames as MJPEG parts, from the next one on, until `QUIET_SECONDS`
        pass without one (or the caller stops iterating)."""
        key = (hub_id, access_point)
        channel = self._channels.setdefault(key, _Channel())
        channel.viewers += 1
        self._wanted.setdefault(hub_id, asyncio.Event()).set()
        try:
            seen = channel.seq
            while True:
                async with channel.changed:
                    try:
                        await asyncio.wait_for(_newer(channel, seen), QUIET_SECONDS)
                    except TimeoutError:
                        return
                    seen, frame = channel.seq, channel.frame
                yield _part(frame)
        finally:
            channel.viewers -= 1
            if not channel.viewers and self._channels.get(key) is channel:
                del self._channels[key]  # its last frame goes with it


async def _newer(channel: _Channel, seen: int) -> None:
    await channel.changed.wait_for(lambda: channel.seq != seen)


def _part(frame: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
    return head.encode() + frame + b"\r\n"
