"""MQTT topic grammar (DESIGN "Cloud <-> hub").

doorstep/hubs/{hub}/cmd       service -> hub   commands (QoS 1, message expiry set)
doorstep/hubs/{hub}/reply     hub -> service   command results
doorstep/hubs/{hub}/events    hub -> service   journalled events
doorstep/hubs/{hub}/ack       service -> hub   cumulative ack (retained)
doorstep/hubs/{hub}/desired   service -> hub   shadow (retained)
doorstep/hubs/{hub}/reported  hub -> service   shadow (retained)
doorstep/hubs/{hub}/status    hub -> service   online/offline (retained, last will)
doorstep/hubs/{hub}/camera    hub -> service   camera heartbeats during an entry (QoS 0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "doorstep/hubs"
HUB_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")

# Which way each leaf flows, from the hub's point of view; the broker ACL is built from this.
HUB_READS = ("cmd", "ack", "desired")
HUB_WRITES = ("events", "reply", "status", "reported", "camera")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one hub."""

    hub_id: str

    def __post_init__(self) -> None:
        if not HUB_ID_PATTERN.fullmatch(self.hub_id):
            raise ValueError(f"not a valid hub id: {self.hub_id!r}")

    def leaf(self, name: str) -> str:
        return f"{ROOT}/{self.hub_id}/{name}"

    @property
    def cmd(self) -> str:
        return self.leaf("cmd")

    @property
    def reply(self) -> str:
        return self.leaf("reply")

    @property
    def events(self) -> str:
        return self.leaf("events")

    @property
    def ack(self) -> str:
        return self.leaf("ack")

    @property
    def desired(self) -> str:
        return self.leaf("desired")

    @property
    def reported(self) -> str:
        return self.leaf("reported")

    @property
    def camera(self) -> str:
        return self.leaf("camera")

    @property
    def status(self) -> str:
        return self.leaf("status")


def parse(topic: str) -> tuple[str, str] | None:
    """Split `doorstep/hubs/{hub}/{leaf}` into (hub, leaf), or None if it is not ours."""
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != ROOT:
        return None
    if not HUB_ID_PATTERN.fullmatch(parts[2]):
        return None
    return parts[2], parts[3]


# Wildcards the service subscribes to.
ALL_EVENTS = f"{ROOT}/+/events"
ALL_REPLIES = f"{ROOT}/+/reply"
ALL_STATUS = f"{ROOT}/+/status"
ALL_CAMERA = f"{ROOT}/+/camera"
ALL_REPORTED = f"{ROOT}/+/reported"
