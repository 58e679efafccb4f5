"""The hot paths' writer process (`doorstep.hotwriter`, the default): while it is down the
service's own writer thread decides entries and stores what hubs send, so a courier is
served either way; the service starts it again; and with `writer_process = false` the
writer thread decides the same way."""

from __future__ import annotations

import asyncio
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
from doorstep.audit.models import AuditEvent
from doorstep.errors import NotAuthenticated, ServiceUnavailable
from doorstep.settings import EntrySettings
from doorstep.sql import Tx
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


def test_an_entry_decided_as_the_writer_process_dies_does_not_hold_the_door(
    live: Any, world: demo.World
) -> None:
    """The writer process commits a courier's authorized entry and dies before its answer
    goes out (here: killed by an after-commit action of a job in the same batch). The
    courier is told 503 and no unlock is sent. Once that process has gone the entry ends
    (`service_restarted`), so the courier's next try is not refused as an entry in
    progress at the door: it goes through."""
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    hot = live.runtime.hot
    assert hot is not None and hot.ready and hot.pid is not None and courier.phone is not None
    doomed = hot.pid
    token = courier.http.headers["authorization"].split()[1]
    request = EntryRequest(
        delivery["id"], "PKG-1", home.latitude, home.longitude, 8.0,
        device_key_id=courier.phone.key_id,
    )  # fmt: skip
    die = functools.partial(Tx.on_commit, action=functools.partial(os.kill, doomed, signal.SIGKILL))

    async def decide_then_die() -> Any:
        # Both in one frame, so in one batch: the decision, then the job whose
        # after-commit action kills the process before any answer is sent.
        decision = asyncio.ensure_future(
            hot.decide(token=token, request=request, now=datetime.now(UTC))
        )
        asyncio.get_running_loop().call_soon(hot._ask, ("job", die))
        return await decision

    loop = live.runtime.link._mqtt._loop
    with pytest.raises(ServiceUnavailable):
        asyncio.run_coroutine_threadsafe(decide_then_die(), loop).result(30)
    with live.sessions() as session:
        lost = session.scalars(select(Entry).where(Entry.delivery_id == delivery["id"])).one()
    assert lost.command_id is not None  # it was committed, authorized

    def ended() -> Any:
        with live.sessions() as session:
            entry = session.get(Entry, lost.id)
            return entry if entry is not None and entry.state != "authorized" else None

    entry = wait_until(ended, 30, "the lost entry to end")
    assert (entry.state, entry.reason) == ("expired", "service_restarted")
    with live.sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.subject == lost.id).order_by(AuditEvent.seq)
        ).all()
    assert actions == ["entry:authorized", "entry:expired"]
    retry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert retry["state"] == "unlocked"
    hub = home.hub_process
    assert hub is not None and hub.lock.unlock_calls == 1  # type: ignore[attr-defined]
