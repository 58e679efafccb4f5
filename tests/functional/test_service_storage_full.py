"""The service's database refuses to write (its disk is full): no door opens, nothing a
hub sent is acknowledged before it is stored, and the service recovers without a restart
once the disk writes again.

The full disk is played on the hot paths' writer process (`doorstep.hotwriter`, as
`serve` runs), which makes the entry decisions and stores what hubs send: its file size
limit (RLIMIT_FSIZE, set from outside with `prlimit`, no root needed for one's own
child) is set to 0, so every write of its SQLite files fails as on a full disk
(SQLite: "database or disk is full" or "disk I/O error"); set back, it writes again.
Only that process is touched: the test process, its hub and Mosquitto write as usual.

A decision the database cannot commit is answered as any database error is (a 500 with
an incident id today; `db.busy` makes only a lock wait a 503): no grant was published.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from doorstep import demo
from polling import poll, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def writer_process() -> bool:
    return True


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'service.sqlite3'}"  # a file, on a disk that can fill


@contextmanager
def _disk_full(live: Any) -> Iterator[None]:
    hot = live.runtime.hot
    assert hot is not None and hot.ready and hot.pid is not None
    before = resource.prlimit(hot.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(hot.pid, resource.RLIMIT_FSIZE, (0, before[1]))
    try:
        yield
    finally:
        resource.prlimit(hot.pid, resource.RLIMIT_FSIZE, before)


def test_an_entry_decided_on_a_full_disk_opens_no_door_and_the_service_recovers(
    live: Any, world: demo.World
) -> None:
    home = world.homes[0]
    courier = world.couriers[0][1]
    hub = home.hub_process
    assert hub is not None
    delivery = demo.book(world, home, ["PKG-1", "PKG-2"])
    body = {
        "delivery_id": delivery["id"],
        "barcode": "PKG-1",
        "latitude": home.latitude,
        "longitude": home.longitude,
        "accuracy_m": 8.0,
        "nobody_answered": True,
        "device_key_id": courier.phone.key_id,
    }
    with _disk_full(live):
        response = courier.http.post("/v1/courier/entries?wait=challenge", json=body)
        # Refused before any grant was published: the database error's answer.
        assert response.status_code >= 500, response.text
        # What the hub sends meanwhile is not acknowledged: it stays in its journal.
        home.door("open_door")
        home.door("close_door")
        # Longer than a resend round (3 s): every copy the hub sent failed to store.
        pending = poll(hub.agent.journal.pending_count, lambda n: n == 0, timeout=4)
        assert pending > 0
    assert hub.lock.unlock_calls == 0

    # Room again: the hub's resent events are stored and acknowledged, and entries work.
    wait_until(lambda: hub.agent.journal.pending_count() == 0, 15, "the events acknowledged")
    entry = demo.request_entry(courier, delivery["id"], "PKG-2", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    assert hub.lock.unlock_calls == 1
