"""End to end on real processes: `doorstep serve` (with the Mosquitto it supervises) and
`doorstep hub` as separate programs on loopback, driven only through HTTP, the simulated
door's socket, and signals."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from doorstep import demo
from polling import wait_until


@pytest.fixture
def world(tmp_path: Path) -> Iterator[demo.World]:
    with demo.running(tmp_path / "demo", homes=1, say=lambda _m: None) as built:
        yield built


def test_delivery_end_to_end(world: demo.World) -> None:
    _deliver(world, "E2E-1")
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "doorstep",
            "audit",
            "verify",
            "--data-dir",
            str(world.service.data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout


def _deliver(world: demo.World, barcode: str) -> None:
    """Book, enter, open, close: the entry is done and audited step by step."""
    home, (_courier_id, courier) = world.homes[0], world.couriers[0]
    delivery = demo.book(world, home, [barcode])
    entry = demo.request_entry(courier, delivery["id"], barcode, home.latitude, home.longitude)
    assert entry["state"] == "unlocked"
    home.door("open_door")
    assert demo.wait_entry(courier, entry["id"], "opened")["state"] == "opened"
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"
    assert world.carrier.call("GET", f"/v1/deliveries/{delivery['id']}")["status"] == "delivered"
    trail = [
        r["action"]
        for r in home.resident.call("GET", f"/v1/homes/{home.id}/audit")
        if r["subject"] in (entry["id"], delivery["id"])
    ]
    assert trail == [
        "delivery:booked",
        "entry:authorized",
        "entry:proof_presented",  # the phone signed the door's challenge
        "entry:unlocked",
        "entry:opened",
        "entry:closed",
        "entry:locked",
        "entry:done",
        "delivery:delivered",
    ]


@pytest.mark.slow
def test_a_killed_broker_is_started_again_and_deliveries_go_on(world: demo.World) -> None:
    """SIGKILL the Mosquitto that `serve` supervises: `serve` starts it again on the same
    port, the service and the hub reconnect by themselves, and a delivery runs through."""
    broker_dir = world.service.data_dir / "broker"
    pid_file, log_file = broker_dir / "mosquitto.pid", broker_dir / "mosquitto.log"
    killed = int(pid_file.read_text())
    log_before = log_file.stat().st_size
    os.kill(killed, signal.SIGKILL)

    def revived() -> int | None:
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        return pid if pid not in (None, killed) else None

    wait_until(revived, 15, "serve to start the broker again")
    hub_id = world.homes[0].hub_id

    def reconnected() -> bool:
        with log_file.open("rb") as log:
            log.seek(log_before)
            text = log.read().decode(errors="replace")
        return f"as {hub_id} " in text and "as doorstep-service " in text

    wait_until(reconnected, 20, "the hub and the service to reconnect")
    _deliver(world, "E2E-AFTER-CRASH")


def _service_events(database: Path, hub_id: str) -> dict[int, list[int]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT epoch, seq FROM hub_events WHERE hub_id = ? ORDER BY epoch, seq", (hub_id,)
        ).fetchall()
    streams: dict[int, list[int]] = {}
    for epoch, seq in rows:
        streams.setdefault(epoch, []).append(seq)
    return streams


@pytest.mark.slow
def test_hub_killed_between_events_loses_nothing(world: demo.World) -> None:
    """SIGKILL the hub right after it journalled events it may not have sent; after the
    restart every event of every boot is at the service exactly once."""
    home = world.homes[0]
    expected: dict[int, int] = {}
    for boot in range(1, 4):
        # Each boot: hub.started, then per open of the locked door a forced-open alarm and
        # door.opened, and per close door.closed: 1 + 3 * 3 events.
        for _ in range(3):
            home.door("open_door")
            home.door("close_door")
        expected[boot] = 1 + 3 * 3
        assert home.hub_process is not None
        home.hub_process.stop(signal.SIGKILL)
        home.hub_process = demo.start_hub(world.service, home.hub_dir)
        demo.wait_hub_online(home, online=True, epoch=boot + 1)
    expected[4] = 1
    deadline_probe = 0
    while _service_events(world.service.database, home.hub_id).get(4) != [1]:
        deadline_probe += 1  # each pass is a real round trip to the service
        world.operator.call("GET", "/healthz")
        assert deadline_probe < 2000, "events did not arrive"
    streams = _service_events(world.service.database, home.hub_id)
    while any(len(streams.get(e, [])) < n for e, n in expected.items()):
        deadline_probe += 1
        world.operator.call("GET", "/healthz")
        assert deadline_probe < 4000, f"events missing: {streams}"
        streams = _service_events(world.service.database, home.hub_id)
    assert {e: s for e, s in streams.items()} == {
        e: list(range(1, n + 1)) for e, n in expected.items()
    }
