"""A whole courier entry through each real-protocol driver: the service, the Doorstep
broker and an in-process hub whose `locks.toml` points the front door at a Zigbee2MQTT
peer (on its own Mosquitto, as a resident's would be) or a Matter server peer.

The peers play the lock and the door; the courier's request, the grant, the unlock, the
relock on door close and the entry's `done` are the real service and hub.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from doorstep import demo
from doorstep.hub import lockconfig
from doorstep.hub.lock import LockState
from polling import wait_until

from .conftest import Rig
from .matter_peer import MatterServerPeer, load_node, running_peer

WAIT = 15.0


def _deliver(
    world: demo.World, open_door: Callable[[], None], close_door: Callable[[], None]
) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    open_door()
    demo.wait_entry(courier, entry["id"], "opened", timeout=WAIT)
    close_door()
    done = demo.wait_entry(courier, entry["id"], "done", timeout=WAIT)
    assert done["state"] == "done", done
    actions = [
        record["action"]
        for record in home.resident.call("GET", f"/v1/homes/{home.id}/audit")
        if record["subject"] == entry["id"]
    ]
    assert actions == [
        "entry:authorized",
        "entry:proof_presented",  # the phone signed the door's challenge
        "entry:unlocked",
        "entry:opened",
        "entry:closed",
        "entry:locked",
        "entry:done",
    ]


def _toml(values: dict[str, Any]) -> str:
    lines = ["[access_points.front]"]
    for key, value in values.items():
        lines.append(f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines).replace("'", '"') + "\n"


def test_courier_entry_through_zigbee2mqtt(
    live: Any, make_world: Callable[..., demo.World], rig: Rig
) -> None:
    world = make_world(_toml({"driver": "zigbee2mqtt", **rig.config()}))
    lock = world.homes[0].hub_process.lock  # type: ignore[union-attr]
    assert type(lock).__name__ == "Zigbee2MqttLock"
    assert lock.wait_for(lambda status: status.secure, WAIT), lock.status()
    _deliver(world, rig.peer.open_door, rig.peer.close_door)
    commands = [command.get("state") for command in rig.peer.commands()]
    assert commands == ["UNLOCK", "LOCK"]
    assert lock.status().secure


@pytest.fixture
def matter_peer() -> Iterator[MatterServerPeer]:
    node = load_node()
    with running_peer(node) as peer:
        peer.set_attribute("1/257/0", int(LockState.LOCKED))  # the recorded node is unlocked
        yield peer


def test_courier_entry_through_matter(
    live: Any, make_world: Callable[..., demo.World], matter_peer: MatterServerPeer
) -> None:
    config = {"driver": "matter", "url": matter_peer.url, "node_id": matter_peer.node_id}
    world = make_world(_toml(config))
    lock = world.homes[0].hub_process.lock  # type: ignore[union-attr]
    assert type(lock).__name__ == "MatterLock"
    assert lock.wait_for_status(lambda status: status.secure, WAIT), lock.status()
    _deliver(world, matter_peer.open_door, matter_peer.close_door)
    names = [command["command_name"] for command in matter_peer.commands]
    assert names == ["UnlockDoor", "LockDoor"]
    assert all(command.get("timed_request_timeout_ms") for command in matter_peer.commands)
    assert lock.status().secure
    # The hub's journal keeps the highest event number the lock sent, for its next start.
    journal = world.homes[0].hub_process.agent.journal  # type: ignore[union-attr]
    mark = f"matter/{matter_peer.node_id}/{matter_peer.node['date_commissioned']}"
    last = matter_peer.history[-1]["event_number"]
    wait_until(lambda: journal.lock_event_mark(mark) == last, WAIT, "the event mark")


def test_a_bad_lock_config_stops_the_hub_before_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "locks.toml"
    cases = {
        '[access_points.back]\ndriver = "simulated"\n': "no access point 'back'",
        '[access_points.front]\ndriver = "zwave"\n': "driver must be one of",
        "[access_points.front\n": "locks.toml",
        "[other]\nx = 1\n": "unknown section",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(lockconfig.LockConfigError, match=message):
            lockconfig.load(path, ["front"])
    with pytest.raises(lockconfig.LockConfigError, match=r"front.*matter"):
        lockconfig.build("front", {"driver": "matter", "node_id": 1})  # no url
