"""Which driver runs each access point's lock: the hub's `locks.toml`.

The file lives in the hub's data directory (or is named with `doorstep hub --locks`).
One table per access point, keyed by its slug; `driver` picks the driver and the other
keys are that driver's own settings:

    [access_points.front]
    driver = "zigbee2mqtt"            # the resident's Zigbee2MQTT broker and devices
    host = "192.168.1.10"
    lock = "front_door"               # the lock's friendly_name
    contact_sensor = "front_contact"  # a door sensor, when the lock has none

    [access_points.back]
    driver = "matter"                 # a python-matter-server (or compatible) WebSocket
    url = "ws://192.168.1.10:5580/ws"
    node_id = 7

Any table may also name the door's camera, `camera = "<URL ffmpeg reads>"` (RTSP, HTTP,
UDP, a file): that door then opens only while the camera is live, and every entry is
recorded (`hub.camera`). An access point the file does not name runs the simulated lock.
A slug the hub does not have, an unknown driver, or a bad setting is an error at start:
the hub refuses to run rather than guess which door it is driving. See each driver module
for its keys: `drivers.zigbee2mqtt` (`_zigbee2mqtt/config.py`), `drivers.matter`
(`_matter/config.py`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from doorstep.hub.journal import Journal
from doorstep.hub.lock import LockDriver

DRIVERS = ("simulated", "zigbee2mqtt", "matter")
FILE_NAME = "locks.toml"


class LockConfigError(ValueError):
    """The lock configuration cannot be used; the message says where and why."""


def load(path: Path, access_points: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Read and check `path`: access point slug -> driver settings (with `driver`)."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LockConfigError(f"{path}: {exc}") from exc
    unknown_top = set(document) - {"access_points"}
    if unknown_top:
        raise LockConfigError(f"{path}: unknown section(s) {sorted(unknown_top)}")
    tables = document.get("access_points", {})
    specs: dict[str, dict[str, Any]] = {}
    for slug, table in tables.items():
        if slug not in access_points:
            raise LockConfigError(
                f"{path}: this hub has no access point {slug!r} (it has {list(access_points)})"
            )
        if not isinstance(table, dict) or table.get("driver") not in DRIVERS:
            raise LockConfigError(
                f"{path}: access_points.{slug}.driver must be one of {', '.join(DRIVERS)}"
            )
        camera = table.get("camera")
        if camera is not None and (not isinstance(camera, str) or not camera.strip()):
            raise LockConfigError(f"{path}: access_points.{slug}.camera must be a URL")
        specs[slug] = dict(table)
    return specs


def build(slug: str, spec: Mapping[str, Any], *, journal: Journal | None = None) -> LockDriver:
    """Make (and connect) the driver `spec` names; the simulated lock is not built here.
    The Matter driver keeps the highest event number its lock has sent in `journal`."""
    settings = {key: value for key, value in spec.items() if key not in ("driver", "camera")}
    try:
        if spec["driver"] == "zigbee2mqtt":
            from doorstep.hub.drivers.zigbee2mqtt import Zigbee2MqttLock

            return Zigbee2MqttLock.from_config(settings)
        if spec["driver"] == "matter":
            from doorstep.hub.drivers.matter import MatterLock

            return MatterLock.from_config(settings, event_marks=journal)
    except (ValueError, ConnectionError, OSError) as exc:
        raise LockConfigError(f"access point {slug!r} ({spec['driver']}): {exc}") from exc
    raise LockConfigError(f"access point {slug!r}: {spec['driver']!r} is not built here")
