"""The hot paths' writer process (`doorstep.hotwriter`, the default): while it is down the
service's own writer thread decides entries and stores what hubs send, so a courier is
served either way; the service starts it again; and with `writer_process = false` the
writer thread decides the same way."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import signal
import sqlite3
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select, text

from doorstep import db, demo, hotwriter
from doorstep.access import service as access_service
from doorstep.access.models import Entry
from doorstep.access.router import decide_entry, run_decision
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

    entry = _ended_entry(live, delivery["id"])
    assert (entry.id, entry.state, entry.reason) == (lost.id, "expired", "service_restarted")
    assert _actions(live, lost.id) == ["entry:authorized", "entry:expired"]
    retry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert retry["state"] == "unlocked"
    hub = home.hub_process
    assert hub is not None and hub.lock.unlock_calls == 1  # type: ignore[attr-defined]


@contextmanager
def _decisions_held(live: Any) -> Iterator[Callable[[], bool]]:
    """The writer process's transactions stall for as long as the block runs: on SQLite
    the writers' turn is held, on PostgreSQL the audit chain's head row (every decision
    appends to the chain). Yields a check that the process has read every request sent
    to it and is waiting there: a decision asked for before is then in that stalled
    transaction."""
    hot = live.runtime.hot
    assert hot is not None and hot.pid is not None

    def all_read() -> bool:  # nothing the service sent is left unread by the child
        sock = hot._writer.get_extra_info("socket")
        unread = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return int.from_bytes(unread, "little") == 0

    with live.sessions() as session:
        path = db.batch_lock_path(session.get_bind().engine)
        if path is None:
            session.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))

            def waiting_on_row() -> bool:
                with live.sessions() as other:
                    count = other.scalar(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE 'UPDATE audit_head%'"
                    ))  # fmt: skip
                return bool(count) and all_read()

            yield waiting_on_row
            session.rollback()
            return
    holder = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)

        def waiting_for_turn() -> bool:  # the child's wait, as /proc/locks shows it
            locks = Path("/proc/locks").read_text().splitlines()
            return any("->" in line and f" {hot.pid} " in line for line in locks) and all_read()

        yield waiting_for_turn
    finally:
        os.close(holder)


def test_a_decision_committed_after_its_request_gave_up_does_not_hold_the_door(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The courier's request stops waiting (cancelled; the job timeout acts the same way)
    while the writer process is in the middle of the decision, which then commits. Its
    answer comes back to nobody and no unlock is sent; the entry ends
    (`request_abandoned`) instead of holding the door, and the courier's next try goes
    through."""
    home, courier, delivery, token, request = _courier_at_the_door(world)
    runtime = live.runtime
    # The service's background jobs (the outbox's, every 0.5 s) go to its writer thread
    # meanwhile: a frame sent to the stalled writer process after the decision would stay
    # unread, and `stalled` could never see it has read everything.
    monkeypatch.setattr(runtime.hot, "submit", runtime.writer.submit)

    with _decisions_held(live) as stalled:

        async def give_up_once_stalled() -> None:
            hot = runtime.hot
            task = asyncio.ensure_future(decide_entry(runtime, token, request, datetime.now(UTC)))
            for _ in range(100):  # passes of the loop until the request has been written
                if hot._waiting and not hot._outgoing:
                    break
                await asyncio.sleep(0)
            await asyncio.to_thread(wait_until, stalled, 30, "the decision to stall")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        loop = runtime.link._mqtt._loop
        asyncio.run_coroutine_threadsafe(give_up_once_stalled(), loop).result(40)
    # The turn is free: the decision commits, and its answer finds nobody waiting.
    entry = _ended_entry(live, delivery["id"])
    assert (entry.state, entry.reason) == ("expired", "request_abandoned")
    assert _actions(live, entry.id) == ["entry:authorized", "entry:expired"]
    hub = home.hub_process
    assert hub is not None and hub.lock.unlock_calls == 0  # type: ignore[attr-defined]
    retry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert retry["state"] == "unlocked"
    assert hub.lock.unlock_calls == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("writer_process", [False])
def test_on_the_writer_thread_too_a_decision_committed_after_its_request_gave_up_ends(
    live: Any, world: demo.World
) -> None:
    """The same, with the decision on the service's own writer thread
    (`writer_process = false`, and whenever the writer process is down): here the
    decision's job itself is held, after it has decided, until the request has given
    up."""
    home, courier, delivery, token, request = _courier_at_the_door(world)
    runtime = live.runtime
    assert runtime.hot is None
    decided, given_up = threading.Event(), threading.Event()

    def decide_and_hold(tx: Tx) -> Any:
        decision = decide(
            tx, token=token, request=request, now=datetime.now(UTC),
            settings=runtime.settings.entry, signer=runtime.keys.signer,
        )  # fmt: skip
        decided.set()
        assert given_up.wait(30)
        return decision

    async def give_up_once_decided() -> None:
        task = asyncio.ensure_future(run_decision(runtime, decide_and_hold))
        assert await asyncio.to_thread(decided.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        given_up.set()

    loop = runtime.link._mqtt._loop
    asyncio.run_coroutine_threadsafe(give_up_once_decided(), loop).result(40)
    entry = _ended_entry(live, delivery["id"])
    assert (entry.state, entry.reason) == ("expired", "request_abandoned")
    assert _actions(live, entry.id) == ["entry:authorized", "entry:expired"]
    retry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert retry["state"] == "unlocked"
    hub = home.hub_process
    assert hub is not None and hub.lock.unlock_calls == 1  # type: ignore[attr-defined]


def _courier_at_the_door(world: demo.World) -> tuple[Any, Any, Any, str, EntryRequest]:
    """The first home, its courier, a delivery booked for it, the courier's bearer token
    and the entry request the courier's app makes at the door."""
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    token = courier.http.headers["authorization"].split()[1]
    assert courier.phone is not None
    request = EntryRequest(
        delivery["id"], "PKG-1", home.latitude, home.longitude, 8.0,
        device_key_id=courier.phone.key_id,
    )  # fmt: skip
    return home, courier, delivery, token, request


def _ended_entry(live: Any, delivery_id: str) -> Entry:
    def ended() -> Entry | None:
        with live.sessions() as session:
            query = select(Entry).where(Entry.delivery_id == delivery_id)
            entry = session.scalars(query).one_or_none()  # committed a moment later
            return entry if entry is not None and entry.state != "authorized" else None

    ended_entry: Entry = wait_until(ended, 30, "the entry to end")
    return ended_entry


def _actions(live: Any, entry_id: str) -> list[str]:
    with live.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subject == entry_id)
                .order_by(AuditEvent.seq)
            ).all()
        )


@pytest.mark.parametrize("writer_process", [False])
def test_a_busy_database_refuses_the_entry_with_a_503_that_changed_nothing(
    live: Any, world: demo.World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database says "not now" to the decision's transaction (SQLite: its lock not
    had within the busy timeout; PostgreSQL: a deadlock), here raised as the driver
    raises it: the courier is told to try again, with nothing recorded and no door
    opened, not given a 500. (From the writer process the error crosses back as the
    same exception: `tests/unit/test_hotwriter.py`.)"""
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    busy: Exception = (
        sqlite3.OperationalError("database is locked")
        if database_url.startswith("sqlite")
        else psycopg.errors.DeadlockDetected("deadlock detected")
    )

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise busy

    monkeypatch.setattr(access_service, "decide", refused)
    body = {
        "delivery_id": delivery["id"], "barcode": "PKG-1", "latitude": home.latitude,
        "longitude": home.longitude, "accuracy_m": 8.0, "nobody_answered": True,
    }  # fmt: skip
    answer = courier.http.post("/v1/courier/entries", json=body)
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "unavailable"
    assert "nothing was changed" in answer.json()["error"]["message"]
    assert _entries_of(live, delivery["id"]) == 0
    monkeypatch.undo()  # the database answers again: the same request goes through
    retry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert retry["state"] == "unlocked"
    hub = home.hub_process
    assert hub is not None and hub.lock.unlock_calls == 1  # type: ignore[attr-defined]
