"""Two writers changing one entry at once: on PostgreSQL the hub's hot writer process and
the service's writer thread run their transactions concurrently (READ COMMITTED), so a
state one of them read may have changed by the time its UPDATE holds the row. Every
transition is conditional on the states it may move from, in the UPDATE itself: the
later writer changes nothing, and writes no audit record and no notification."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from doorstep.access import service as access
from doorstep.accounts.models import PrincipalKind
from doorstep.accounts.service import Principal
from doorstep.errors import Conflict
from doorstep.hublink.link import Ingestor
from doorstep.permissions import PrincipalRole
from doorstep.protocol.grants import GrantSigner, public_key_bytes
from doorstep.protocol.messages import GENESIS_HASH, Event, EventKind, b64encode
from doorstep.settings import EntrySettings
from doorstep.sql import Tx
from polling import poll
from postgres import committed

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OWNER, COURIER, HOME, HUB, DOOR = "usr-owner", "usr-courier", "home-a", "hub-a", "ap-a"
KEY = Ed25519PrivateKey.generate()

Job = Callable[[Tx], Any]


def _seed(engine: Engine, entry_state: str) -> None:
    """A home, its hub and door, and a courier's entry `ent-1` there, its grant expired."""

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
               " grant_expires_at, created_at, updated_at, purpose, method)"
               " VALUES ('ent-1', ?, ?, ?, ?, ?, ?, ?, ?, 'delivery', 'app')",
               (HOME, DOOR, HUB, COURIER, entry_state, tx.time(NOW - timedelta(minutes=1)),
                at, at))  # fmt: skip

    committed(engine, job)


def _unlocked(tx: Tx) -> Any:
    """The hub's `lock.unlocked` for ent-1, stored as its link stores it (hot writer)."""
    event = Event(hub=HUB, epoch=1, seq=1, event_id=str(uuid.uuid4()), ts=NOW.timestamp(),
                  kind=EventKind.LOCK_UNLOCKED, data={"access_point": "front", "entry_id": "ent-1"},
                  prev_hash=GENESIS_HASH)  # fmt: skip
    signed = event.model_copy(update={"sig": b64encode(KEY.sign(event.signing_bytes()))})
    return Ingestor().store(tx, HUB, "events", signed.model_dump_json().encode(), NOW)


def _abort(tx: Tx) -> Any:
    """The courier calls ent-1 off (the service's writer thread)."""
    courier = Principal(PrincipalKind.USER, COURIER, PrincipalRole.COURIER, None)
    return access.abort_entry(tx, courier=courier, entry_id="ent-1", why="pet", note="", now=NOW,
                              settings=EntrySettings(), signer=GrantSigner(KEY))  # fmt: skip


def _expire(tx: Tx) -> int:
    """The sweep of entries whose grant expired unanswered (the service's writer thread)."""
    return access.expire_stale(tx, now=NOW)


def _race(engine: Engine, first: Job, second: Job) -> Any:
    """`first` runs and holds its transaction open; `second` starts in another connection
    and blocks on ent-1's row lock; then `first` commits and `second` finishes. Returns
    what `second` returned."""
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


def _state(engine: Engine) -> Any:
    return committed(engine, lambda tx: tx.one("SELECT state FROM entries WHERE id = 'ent-1'"))


def _actions(engine: Engine) -> list[str]:
    rows = committed(engine, lambda tx: tx.all(
        "SELECT action FROM audit_events WHERE subject = 'ent-1' ORDER BY seq"))  # fmt: skip
    return [action for (action,) in rows]


def _notified(engine: Engine) -> list[str]:
    sql = "SELECT event_id FROM outbox WHERE event_id LIKE ? ORDER BY event_id"
    rows = committed(engine, lambda tx: tx.all(sql, ("ent-1.%",)))
    return [event_id for (event_id,) in rows]


@pytest.mark.postgres
def test_an_unlock_that_waited_on_the_couriers_abort_does_not_revive_the_entry(
    pg_engine: Engine,
) -> None:
    _seed(pg_engine, "authorized")

    outcome = _race(pg_engine, _abort, _unlocked)

    assert outcome.ack == (HUB, 1, 1)  # the event itself is stored and acknowledged
    assert _state(pg_engine) == ("aborted",)
    # The late unlock is on record, and ends nothing.
    assert _actions(pg_engine) == [
        "entry:abort_requested",
        "entry:aborted",
        "entry:unlocked_after_end",
    ]
    assert "ent-1.unlocked" not in _notified(pg_engine)


@pytest.mark.postgres
def test_the_expiry_sweep_that_waited_on_the_hubs_unlock_leaves_it_unlocked(
    pg_engine: Engine,
) -> None:
    _seed(pg_engine, "authorized")

    expired = _race(pg_engine, _unlocked, _expire)

    assert expired == 0
    assert _state(pg_engine) == ("unlocked",)
    assert _actions(pg_engine) == ["entry:unlocked"]
    assert "ent-1.expired" not in _notified(pg_engine)


def test_the_expiry_sweep_ends_what_it_expires_and_nothing_moves_it_after(
    migrated_engine: Engine,
) -> None:
    _seed(migrated_engine, "authorized")

    expired = committed(migrated_engine, _expire)
    again = committed(migrated_engine, _expire)
    committed(migrated_engine, _unlocked)

    assert (expired, again) == (1, 0)
    assert _state(migrated_engine) == ("expired",)
    assert _actions(migrated_engine) == ["entry:expired", "entry:unlocked_after_end"]
    # The resident hears of it: their door was unlocked with no entry open.
    assert "ent-1.unlocked_after_end" in _notified(migrated_engine)
    assert "ent-1.unlocked" not in _notified(migrated_engine)
    with pytest.raises(Conflict):
        committed(migrated_engine, _abort)
