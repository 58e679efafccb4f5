"""Two `serve` processes on one database: each receives every message a hub sends, so
both store the same events, statuses and replies at about the same time. Each event is
stored, and its effects applied, once; neither writer fails; a status change is audited
once; an alert is raised once; acks stay right; and a request waiting for a reply is
woken even if this process failed to store it, as long as the other one did.

On PostgreSQL (READ COMMITTED) the two writers' transactions run concurrently: the
`_race` tests hold the first open while the second runs into it, then commit. On SQLite
a writer holds the whole database for its batch, so the two take turns."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from doorstep.access import service as access
from doorstep.clock import SystemClock
from doorstep.hublink.link import HubLink, Ingestor
from doorstep.protocol.grants import public_key_bytes
from doorstep.protocol.messages import (
    GENESIS_HASH,
    Alert,
    Event,
    EventKind,
    Reply,
    Status,
    b64encode,
)
from doorstep.protocol.mqtt import BrokerAddress
from doorstep.settings import HubLinkSettings
from doorstep.sql import Tx, Writer
from polling import poll
from postgres import committed

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OWNER, COURIER, HOME, HUB, DOOR = "usr-owner", "usr-courier", "home-a", "hub-a", "ap-a"
KEY = Ed25519PrivateKey.generate()

Job = Callable[[Tx], Any]


def _seed(engine: Engine, entry_state: str, alert: str | None = None) -> None:
    """A home, its hub (online, epoch 1) and door, and a courier's entry `ent-1` there
    (command `cmd-1` sent for it), flagged with `alert` if given."""

    def job(tx: Tx) -> None:
        at = tx.time(NOW)
        for user, role in ((OWNER, "resident"), (COURIER, "courier")):
            tx.run("INSERT INTO users (id, email, name, password_hash, role, active, created_at)"
                   " VALUES (?, ?, ?, 'x', ?, ?, ?)",
                   (user, f"{user}@example.org", user, role, True, at))  # fmt: skip
        tx.run("INSERT INTO homes (id, owner_id, name, address, latitude, longitude, geofence_m,"
               " timezone, in_home_enabled, created_at, allowed_weekdays, approval_mode,"
               " approval_timeout_seconds, pet_notes, placement_notes) VALUES"
               " (?, ?, 'Home', 'Street 1', 0, 0, 50, 'UTC', ?, ?, 127, 'auto', 120, '', '')",
               (HOME, OWNER, True, at))  # fmt: skip
        tx.run("INSERT INTO hubs (id, home_id, online, created_at, public_key, claimed_at, epoch)"
               " VALUES (?, ?, ?, ?, ?, ?, 1)",
               (HUB, HOME, True, at, public_key_bytes(KEY.public_key()), at))  # fmt: skip
        tx.run("INSERT INTO access_points (id, home_id, slug, name, kind, created_at, hub_id)"
               " VALUES (?, ?, 'front', 'Front', 'door', ?, ?)", (DOOR, HOME, at, HUB))  # fmt: skip
        tx.run("INSERT INTO entries (id, home_id, access_point_id, hub_id, courier_id, state,"
               " command_id, alert, created_at, updated_at, purpose, method)"
               " VALUES ('ent-1', ?, ?, ?, ?, ?, 'cmd-1', ?, ?, ?, 'delivery', 'app')",
               (HOME, DOOR, HUB, COURIER, entry_state, alert, at, at))  # fmt: skip

    committed(engine, job)


def _event(epoch: int, seq: int, kind: str, **data: Any) -> bytes:
    event = Event(hub=HUB, epoch=epoch, seq=seq, event_id=str(uuid.uuid5(uuid.NAMESPACE_URL,
                  f"{epoch}/{seq}")), ts=NOW.timestamp(), kind=kind, data=data,
                  prev_hash=GENESIS_HASH)  # fmt: skip
    signed = event.model_copy(update={"sig": b64encode(KEY.sign(event.signing_bytes()))})
    return signed.model_dump_json().encode()


def _status(state: Literal["online", "offline"], epoch: int) -> bytes:
    return Status(state=state, epoch=epoch).model_dump_json().encode()


def _reply() -> bytes:
    return Reply(command_id="cmd-1", result="ok").model_dump_json().encode()


def _store(leaf: str, payload: bytes, ingestor: Ingestor | None = None) -> Job:
    """The job a `serve` process's link runs for a message: its own `Ingestor`."""
    return lambda tx: (ingestor or Ingestor()).store(tx, HUB, leaf, payload, NOW)


def _race(engine: Engine, first: Job, second: Job) -> Any:
    """`first` runs and holds its transaction open; `second` starts in another connection
    and waits on a lock `first` holds; then `first` commits and `second` finishes.
    Returns what `second` returned."""
    first_connection, second_connection = engine.raw_connection(), engine.raw_connection()
    try:
        first_tx = Tx(first_connection.driver_connection, "postgresql")
        second_tx = Tx(second_connection.driver_connection, "postgresql")
        pid = second_tx.one("SELECT pg_backend_pid()")
        second_connection.commit()
        first(first_tx)
        with ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(second, second_tx)
            waiting = poll(lambda: _wait_event(engine, pid), lambda kind: kind == "Lock", 10)
            assert waiting == "Lock", f"the second writer never waited on a lock ({waiting})"
            first_connection.commit()
            result = blocked.result(timeout=10)
        second_connection.commit()
        return result
    finally:
        first_connection.close()
        second_connection.close()


def _wait_event(engine: Engine, pid: Any) -> Any:
    row = committed(engine, lambda tx: tx.one(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", pid))  # fmt: skip
    return row[0] if row else None


def _all(engine: Engine, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return committed(engine, lambda tx: tx.all(sql, params))


def _actions(engine: Engine, subject: str) -> list[str]:
    sql = "SELECT action FROM audit_events WHERE subject = ? ORDER BY seq"
    return [action for (action,) in _all(engine, sql, (subject,))]


def _stored(engine: Engine) -> list[tuple[Any, ...]]:
    return _all(engine, "SELECT epoch, seq FROM hub_events ORDER BY epoch, seq")


@pytest.mark.postgres
@pytest.mark.parametrize("seq", [1, 2], ids=["first-of-its-epoch", "later"])
def test_an_event_two_writers_store_at_once_is_stored_and_applied_once(
    pg_engine: Engine, seq: int
) -> None:
    _seed(pg_engine, "authorized")
    if seq > 1:  # the stream exists already
        committed(pg_engine, _store("events", _event(1, 1, EventKind.DOOR_CLOSED)))
    unlocked = _event(1, seq, EventKind.LOCK_UNLOCKED, access_point="front", entry_id="ent-1")

    second = _race(pg_engine, _store("events", unlocked), _store("events", unlocked))

    assert (second.ack, second.replay, second.changed) == ((HUB, 1, seq), None, False)
    assert _stored(pg_engine) == [(1, n) for n in range(1, seq + 1)]
    assert _actions(pg_engine, "ent-1") == ["entry:unlocked"]
    assert _all(pg_engine, "SELECT through_seq, max_seq FROM hub_streams") == [(seq, seq)]


@pytest.mark.postgres
def test_a_status_two_writers_store_at_once_is_audited_once(pg_engine: Engine) -> None:
    _seed(pg_engine, "authorized")
    offline = _store("status", _status("offline", 1))

    _race(pg_engine, offline, offline)

    assert _all(pg_engine, "SELECT online, epoch FROM hubs") == [(False, 1)]
    assert _actions(pg_engine, HUB) == ["hub:status:offline"]


def _camera_silent(tx: Tx) -> bool:
    return access.camera_silent(tx, hub_id=HUB, entry_id="ent-1", silent_for=3.5, now=NOW)


@pytest.mark.postgres
@pytest.mark.parametrize("alert", [None, Alert.RELOCK_FAILED])
def test_a_camera_two_processes_find_silent_at_once_is_flagged_once(
    pg_engine: Engine, alert: str | None
) -> None:
    _seed(pg_engine, "opened", alert)

    flagged = _race(pg_engine, _camera_silent, _camera_silent)

    assert flagged is False
    assert _actions(pg_engine, "ent-1") == ["entry:alert"]
    mails = _all(pg_engine, "SELECT event_id FROM outbox WHERE channel = 'email'")
    assert mails == [("ent-1.alert.camera_lost",)]
    assert _all(pg_engine, "SELECT alert FROM entries") == [(alert or Alert.CAMERA_LOST,)]


def _sequence() -> list[tuple[str, bytes]]:
    """What a hub sends over three boots: an entry's events, then reboots, each audited
    (`online` of a new epoch) and some events of each epoch."""
    door = {"access_point": "front", "entry_id": "ent-1"}
    messages = [
        ("events", _event(1, 1, EventKind.LOCK_UNLOCKED, **door)),
        ("events", _event(1, 2, EventKind.DOOR_OPENED, **door)),
        ("events", _event(1, 3, EventKind.DOOR_CLOSED, **door)),
        ("events", _event(1, 4, EventKind.LOCK_LOCKED, **door)),
        ("status", _status("offline", 1)),
        ("status", _status("online", 2)),
    ]
    messages += [("events", _event(2, seq, EventKind.DOOR_CLOSED)) for seq in range(1, 11)]
    messages.append(("status", _status("online", 3)))
    messages += [("events", _event(3, seq, EventKind.DOOR_CLOSED)) for seq in range(1, 11)]
    return messages


def test_two_writers_storing_the_same_messages_store_each_once(
    migrated_engine: Engine,
) -> None:
    _seed(migrated_engine, "authorized")
    messages = _sequence()
    writers = [Writer(migrated_engine, name=f"writer-{n}") for n in range(2)]
    start = threading.Barrier(2)

    def serve(writer: Writer) -> list[Any]:
        ingestor = Ingestor()  # each process has its own
        start.wait(timeout=10)
        return [writer.submit(_store(leaf, payload, ingestor)).result(timeout=30)
                for leaf, payload in messages]  # fmt: skip

    for writer in writers:
        writer.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(serve, writers))
    finally:
        for writer in writers:
            writer.stop()

    assert sorted(_stored(migrated_engine)) == sorted(
        [(1, seq) for seq in range(1, 5)] + [(e, seq) for e in (2, 3) for seq in range(1, 11)]
    )
    assert _actions(migrated_engine, "ent-1") == ["entry:unlocked", "entry:opened",
                                                  "entry:closed", "entry:locked"]  # fmt: skip
    assert _actions(migrated_engine, HUB) == [
        "hub:status:offline",
        "hub:status:online",
        "hub:status:online",
    ]
    last = {1: 4, 2: 10, 3: 10}
    for mine in outcomes:  # each acks its event or beyond (the other's), and sees no gap
        for (leaf, payload), outcome in zip(messages, mine, strict=True):
            if leaf == "events":
                epoch, seq = _seq(payload)
                hub, acked_epoch, through = outcome.ack
                assert (hub, acked_epoch) == (HUB, epoch) and seq <= through <= last[epoch]
                assert outcome.replay is None
        assert mine[-1].ack == (HUB, 3, 10)


def _seq(payload: bytes) -> tuple[int, int]:
    event = Event.model_validate_json(payload)
    return event.epoch, event.seq


@pytest.fixture
def writer(migrated_engine: Engine) -> Iterator[Writer]:
    writer = Writer(migrated_engine)
    writer.start()
    yield writer
    writer.stop()


def test_a_reply_this_process_failed_to_store_still_wakes_its_request(
    migrated_engine: Engine, writer: Writer
) -> None:
    _seed(migrated_engine, "authorized")
    link = HubLink(address=BrokerAddress("127.0.0.1", 1883, "doorstep", "x"), writer=writer,
                   clock=SystemClock(), command_expiry_seconds=60,
                   budget=HubLinkSettings())  # fmt: skip
    waiter = link.expect_reply("cmd-1")
    waiter.hub_id = HUB  # as `publish_command` sets it
    # The other process stores the reply; this one's store of it fails (a deadlock
    # between the two, the database broke it here), so its writer process answers so.
    committed(migrated_engine, _store("reply", _reply()))
    loop = asyncio.new_event_loop()
    try:
        failed: asyncio.Future[Any] = loop.create_future()
        failed.set_exception(sqlite3.OperationalError("deadlock detected"))
        link._ingested(failed, HUB, "reply", _reply(), NOW)

        answer = waiter.future.result(timeout=10)
    finally:
        loop.close()

    assert answer.reply.command_id == "cmd-1"
    assert answer.loaded is not None and answer.loaded.state == "unlocked"
    assert _actions(migrated_engine, "ent-1") == ["entry:unlocked"]
