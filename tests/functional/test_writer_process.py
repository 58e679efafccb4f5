"""The hot paths' writer process (`doorstep.hotwriter`, the default): while it is down the
service's own writer thread decides entries and stores what hubs send, so a courier is
served either way; the service starts it again; and with `writer_process = false` the
writer thread decides the same way."""

from __future__ import annotations

import functools
import os
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from doorstep import demo, hotwriter
from doorstep.access.models import Entry
from doorstep.access.service import EntryRequest, decide, expire_stale
from doorstep.errors import NotAuthenticated
from doorstep.settings import EntrySettings
from polling import wait_until


@pytest.fixture
def writer_process() -> bool:
    """As `serve` runs: the hot paths through the writer process (`doorstep.hotwriter`)."""
    return True


def _kill_hot_writer(live: Any) -> int:
    hot = live.runtime.hot
    assert hot is not None and hot.ready and hot.pid is not None
    dead = hot.pid
    os.kill(dead, signal.SIGKILL)
    wait_until(lambda: not hot.ready, 10, "the service to notice the dead process")
    return dead


def _entries_of(live: Any, delivery_id: str) -> int:
    with live.sessions() as session:
        count = session.scalar(select(func.count()).where(Entry.delivery_id == delivery_id))
    return int(count or 0)


def test_while_the_writer_process_is_down_the_service_decides_and_stores_itself(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    monkeypatch.setattr(hotwriter, "RESTART_SECONDS", 60.0)  # stays down meanwhile
    _kill_hot_writer(live)
    # The unlock needs the hub's challenge reply and its events stored: by this process.
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked"
    home.door("open_door")
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"
    assert not live.runtime.hot.ready
    assert _entries_of(live, delivery["id"]) == 1


def test_the_service_starts_the_writer_process_again(live: Any, world: demo.World) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    dead = _kill_hot_writer(live)
    hot = live.runtime.hot
    wait_until(lambda: hot.ready and hot.pid != dead, 30, "a new writer process")
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked"
    assert hot.ready and hot.pid != dead


@pytest.mark.parametrize("writer_process", [False])
def test_without_the_process_the_writer_thread_decides_the_same(
    live: Any, world: demo.World
) -> None:
    assert live.runtime.hot is None
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    wrong = demo.request_entry(courier, delivery["id"], "X", home.latitude, home.longitude)
    assert (wrong["state"], wrong["reason"]) == ("denied", "package_unknown")
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked"


def test_background_jobs_run_in_the_writer_process_from_any_thread(live: Any) -> None:
    """The notification dispatcher and the link's sweeps hand their jobs (partials of
    module-level functions) to the writer process from their own threads."""
    hot = live.runtime.hot
    assert hot is not None and hot.ready
    now = datetime.now(UTC)
    done: list[Any] = []
    thread = threading.Thread(
        target=lambda: done.append(hot.submit(functools.partial(expire_stale, now=now)).result(10))
    )
    thread.start()
    thread.join(15)
    assert done == [0]  # nothing was stale: the job ran and answered
    with pytest.raises(NotAuthenticated):  # what a job raises there is raised here
        nobody = functools.partial(
            decide,
            token="not-a-token",
            request=EntryRequest("del-1", "PKG-1", 52.52, 13.405, 8.0),
            now=now,
            settings=EntrySettings(),
            signer=None,  # never reached: the token is checked first
        )
        hot.submit(nobody).result(10)
