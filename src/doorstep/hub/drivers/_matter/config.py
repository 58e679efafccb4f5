"""The Matter lock driver's settings: `MatterLockConfig`, built from a plain mapping.

    url                "ws://host:5580/ws", the Matter server's WebSocket API (required)
    node_id            the lock's node id on the server's fabric (required)
    endpoint           the Door Lock endpoint, default 1
    pin                PIN for remote operation, sent only when the lock requires one
    timed_request_ms   timed-invoke window, default 10000 (Thread's latency)
    command_timeout    seconds to wait for the server's answer, default 15
    operation_timeout  seconds for the lock to report a lock/unlock outcome, default 30
    open_timeout       seconds to open the WebSocket and read the node dump, default 10
    reconnect_initial  first reconnect delay in seconds, default 0.5, doubling up to
    reconnect_max      default 30
    controller_node_id the Matter server's own controller node id on its fabric, default
                       112233: the id the CHIP SDK's FabricAdmin gives its first
                       controller, so python-matter-server's (it calls NewController()
                       without one), and the OHF matter.js server's (its rootNodeId).
                       Only a lock event naming it answers the hub's requests.

The PIN is kept out of `repr`, so a logged config never shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from doorstep.hub.drivers._matter.cluster import check_pin

REQUIRED = frozenset({"url", "node_id"})
CHIP_CONTROLLER_NODE_ID = 112233
MAX_NODE_ID = 0xFFFF_FFEF_FFFF_FFFF  # the highest operational one (CHIP NodeId.h)


@dataclass(frozen=True)
class MatterLockConfig:
    """Where the lock is and how patient to be with it."""

    url: str
    node_id: int
    endpoint: int = 1
    pin: str | None = field(default=None, repr=False)
    timed_request_ms: int = 10_000
    command_timeout: float = 15.0
    operation_timeout: float = 30.0
    open_timeout: float = 10.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    controller_node_id: int = CHIP_CONTROLLER_NODE_ID

    def __post_init__(self) -> None:
        if not (isinstance(self.url, str) and self.url.startswith(("ws://", "wss://"))):
            raise ValueError("url must be a ws:// or wss:// URL")
        _check_int("node_id", self.node_id, 1)
        _check_int("endpoint", self.endpoint, 0)
        _check_int("timed_request_ms", self.timed_request_ms, 1)
        node = self.controller_node_id
        if not isinstance(node, int) or isinstance(node, bool) or not 1 <= node <= MAX_NODE_ID:
            raise ValueError(f"controller_node_id must be a node id, 1..0x{MAX_NODE_ID:X}")
        if self.pin is not None:
            if not isinstance(self.pin, str):
                raise ValueError("pin must be a string of digits")
            check_pin(self.pin, None)
        for name in (
            "command_timeout",
            "operation_timeout",
            "open_timeout",
            "reconnect_initial",
            "reconnect_max",
        ):
            _check_seconds(name, getattr(self, name))
        if self.reconnect_initial > self.reconnect_max:
            raise ValueError("reconnect_initial must not exceed reconnect_max")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> MatterLockConfig:
        """Settings from a mapping with the keys above; unknown or missing keys raise."""
        unknown = sorted(set(mapping) - {spec.name for spec in fields(cls)})
        if unknown:
            raise ValueError(f"unknown Matter lock settings: {', '.join(unknown)}")
        missing = sorted(REQUIRED - set(mapping))
        if missing:
            raise ValueError(f"missing Matter lock settings: {', '.join(missing)}")
        return cls(**mapping)


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}")


def _check_seconds(name: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds")
