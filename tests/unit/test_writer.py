"""The writer thread: many jobs per transaction, each isolated, answered only after commit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from doorstep import db
from doorstep.sql import Checkpointer, Tx, Writer, batch_lock_path
from polling import poll


def _engine_with_items(url: str) -> Iterator[Engine]:
    engine = db.make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE items (name VARCHAR(20) PRIMARY KEY)"))
    yield engine
    engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    yield from _engine_with_items(database_url)


@pytest.fixture
def writer(engine: Engine) -> Iterator[Writer]:
    writer = Writer(engine)
    writer.start()
    yield writer
    writer.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """For what only SQLite has: a write-ahead log file, writers taking turns."""
    return f"sqlite:///{tmp_path / 'doorstep.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    yield from _engine_with_items(sqlite_url)


def _names(database_url: str) -> list[str]:
    # A separate engine: what another process would see, so only committed rows.
    other = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with other.connect() as connection:
        names = [row[0] for row in connection.execute(text("SELECT name FROM items"))]
    other.dispose()
    return sorted(names)


def _insert(name: str) -> Callable[[Tx], str]:
    def job(tx: Tx) -> str:
        tx.run("INSERT INTO items (name) VALUES (?)", (name,))
        return name

    return job


def test_a_failing_job_rolls_back_alone(writer: Writer, database_url: str) -> None:
    # Hold the writer on a first job so the next three are taken as one batch.
    gate = threading.Event()
    blocker = writer.submit(lambda tx: gate.wait(10))
    good = writer.submit(_insert("a"))
    duplicate = writer.submit(_insert("a"))
    other = writer.submit(_insert("b"))
    gate.set()
    assert blocker.result(10) is True
    assert good.result(10) == "a"
    assert other.result(10) == "b"
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        duplicate.result(10)
    assert _names(database_url) == ["a", "b"]


def test_a_job_is_answered_only_once_committed(writer: Writer, database_url: str) -> None:
    seen_by_then: list[list[str]] = []
    future = writer.submit(_insert("c"), then=lambda _: seen_by_then.append(_names(database_url)))
    assert future.result(10) == "c"
    # `then` runs after the commit, so another connection already sees the row.
    assert seen_by_then == [["c"]]


def test_the_writer_recovers_after_a_failed_batch(
    writer: Writer, engine: Engine, database_url: str
) -> None:
    # A job that ends the transaction under the writer's feet makes the commit fail:
    # every job of that batch fails, and the next batch runs on a fresh connection.
    broken = writer.submit(lambda tx: tx.run("ROLLBACK"))
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type varies
        broken.result(10)
    assert writer.submit(_insert("d")).result(10) == "d"
    assert _names(database_url) == ["d"]


def test_after_commit_actions_run_only_for_jobs_that_committed(
    writer: Writer, database_url: str
) -> None:
    ran: list[tuple[str, list[str]]] = []
    gate = threading.Event()
    writer.submit(lambda tx: gate.wait(10))

    def job(name: str, fail: bool) -> Callable[[Tx], None]:
        def run(tx: Tx) -> None:
            tx.run("INSERT INTO items (name) VALUES (?)", (name,))
            tx.on_commit(lambda: ran.append((name, _names(database_url))))
            if fail:
                raise ValueError("this job fails after asking")

        return run

    good = writer.submit(job("kept", fail=False))
    bad = writer.submit(job("dropped", fail=True))
    gate.set()
    good.result(10)
    with pytest.raises(ValueError, match="fails"):
        bad.result(10)
    assert ran == [("kept", ["kept"])]  # run once committed, and never for the failed job


def test_awaited_jobs_of_one_batch_each_get_their_own_answer(
    writer: Writer, database_url: str
) -> None:
    gate = threading.Event()
    blocker = writer.submit(lambda tx: gate.wait(10))

    async def main() -> list[object]:
        runs = [writer.run(_insert(name)) for name in ("e", "e", "f")]
        tasks = [asyncio.ensure_future(run) for run in runs]
        await asyncio.sleep(0)  # all three queued behind the blocker: one batch
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, duplicate, other = asyncio.run(main())
    assert blocker.result(10) is True
    assert (first, other) == ("e", "f")
    assert isinstance(duplicate, Exception)
    assert re.search(r"(?i)unique|duplicate", str(duplicate))
    assert _names(database_url) == ["e", "f"]


def test_an_awaited_job_that_has_not_started_when_its_caller_gives_up_never_runs(
    writer: Writer, database_url: str
) -> None:
    gate = threading.Event()
    writer.submit(lambda tx: gate.wait(10))

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await writer.run(_insert("late"), timeout=0.05)
        cancelled = asyncio.ensure_future(writer.run(_insert("abandoned")))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled

    asyncio.run(main())
    gate.set()
    assert writer.submit(_insert("g")).result(10) == "g"  # queued after both
    assert _names(database_url) == ["g"]


def test_hand_written_timestamps_match_what_the_orm_stores(database_url: str) -> None:
    # The hot paths write and compare timestamps as `Tx.time` renders them, next to rows
    # the ORM wrote: both must store the same value, or "created_at > ?" silently lies.
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import Column, MetaData, String, Table, select

    engine = db.make_engine(database_url)
    table = Table("stamps", MetaData(), Column("name", String(20)), Column("at", db.UTCDateTime))
    table.metadata.create_all(engine)
    moments = [
        datetime(2026, 11, 24, 3, 4, 5, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 11, 24, 5, 4, 5, 7, tzinfo=timezone(timedelta(hours=2))),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    with engine.begin() as connection:
        for number, moment in enumerate(moments):
            connection.execute(table.insert().values(name=f"orm{number}", at=moment))
        tx = Tx(connection.connection.driver_connection, connection.dialect.name)
        for number, moment in enumerate(moments):
            tx.run("INSERT INTO stamps (name, at) VALUES (?, ?)", (f"tx{number}", tx.time(moment)))
            same = tx.all("SELECT name FROM stamps WHERE at = ? ORDER BY name", (tx.time(moment),))
            assert same == [(f"orm{number}",), (f"tx{number}",)]
        rows = connection.execute(select(table.c.name, table.c.at).order_by(table.c.name))
        read = {name: at for name, at in rows}
    for number, moment in enumerate(moments):
        assert read[f"tx{number}"] == read[f"orm{number}"] == moment.astimezone(UTC)
    engine.dispose()


def test_a_batch_waits_for_the_batch_lock_another_process_holds(
    writer: Writer, engine: Engine, database_url: str
) -> None:
    """SQLite's writers, in any process, take turns through the batch lock beside the
    database file: while another holder has it, no batch of this writer begins."""
    path = batch_lock_path(engine)
    if not database_url.startswith("sqlite"):
        assert path is None  # PostgreSQL orders concurrent writers by its row locks
        return
    assert path is not None
    holder = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        waiting = writer.submit(_insert("held"))
        with pytest.raises(concurrent.futures.TimeoutError):
            waiting.result(0.5)
        assert _names(database_url) == []
        fcntl.flock(holder, fcntl.LOCK_UN)
        assert waiting.result(10) == "held"
    finally:
        os.close(holder)
    assert _names(database_url) == ["held"]


def test_run_batch_runs_jobs_on_the_calling_thread_each_isolated(
    engine: Engine, database_url: str
) -> None:
    writer = Writer(engine)  # its thread is never started
    ran_on: list[str] = []

    def where(tx: Tx) -> None:
        ran_on.append(threading.current_thread().name)

    first = writer.run_batch([_insert("a"), _insert("a"), where, _insert("b")])
    try:
        assert first[0].result(0) == "a"
        assert isinstance(first[1].exception(0), Exception)  # the duplicate, alone
        assert first[3].result(0) == "b"
        assert ran_on == [threading.current_thread().name]
        assert _names(database_url) == ["a", "b"]
        second = writer.run_batch([_insert("c")])  # the same connection, again
        assert second[0].result(0) == "c"
    finally:
        writer.close_batches()
    assert _names(database_url) == ["a", "b", "c"]


def test_what_a_writer_commits_is_copied_back_into_the_database_file_beside_it(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    """The writer's connection no longer copies the write-ahead log back itself (SQLite's
    automatic checkpoint, which held the committing batch); its checkpoint thread does,
    after the commit and with no other connection's help. In WAL mode nothing else
    writes to the database file, so a row's bytes appearing there show the copy."""
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    marker = f"copied-back-{os.getpid()}-{threading.get_ident()}"
    writer = Writer(sqlite_engine)
    writer.start()
    try:
        assert marker.encode() not in database.read_bytes()
        writer.submit(_insert(marker[:20])).result(10)
        found = poll(lambda: marker[:20].encode() in database.read_bytes(), bool, timeout=10)
        assert found, "the committed row never reached the database file"
    finally:
        writer.stop()
    assert not [t for t in threading.enumerate() if t.name == "db-checkpoint"]


def test_a_log_copied_back_while_a_batch_was_open_is_reused_by_the_next_batch(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    """Under a steady stream of batches one is nearly always open when a copy of the log
    completes, and SQLite then appends to the log instead of reusing it. Once the log is
    long, the checkpoint thread finishes its round under the batch lock, so the next
    batch begins with all of it copied and starts the log over."""
    engine = sqlite_engine
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    lock_path = batch_lock_path(engine)
    assert lock_path is not None
    # Another process's writer: its own connection, no automatic checkpoint of its own.
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("PRAGMA wal_autocheckpoint=0")
    other.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")
    other.execute("BEGIN IMMEDIATE")
    for _ in range(1_100):  # a page each: past RESTART_FRAMES
        other.execute("INSERT INTO pages (body) VALUES (?)", ("x" * 3_000,))
    other.execute("COMMIT")
    held = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    checkpointer = Checkpointer(engine, lock_path)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # a batch is open while the copy runs
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO pages (body) VALUES ('open')")
        start = database.stat().st_size
        checkpointer.start()
        checkpointer.written()
        copied = poll(
            lambda: database.stat().st_size - start, lambda size: size >= 1_000 * 3_000, 10
        )
        assert copied >= 1_000 * 3_000  # the first copy has run, beside the open batch
        other.execute("COMMIT")
        fcntl.flock(held, fcntl.LOCK_UN)
        assert poll(lambda: checkpointer.rounds, lambda rounds: rounds >= 1, 10) >= 1
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO pages (body) VALUES ('next')")
        other.execute("COMMIT")
        _busy, logged, _copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert logged < 10, f"the log was not started over: {logged} pages in it"
    finally:
        checkpointer.stop()
        os.close(held)
        other.close()


def _held_elsewhere(path: Path) -> bool:
    """Whether someone holds the batch lock, seen from an open file of our own."""
    probe = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(probe)  # releases it if taken
    return False


def test_a_session_transaction_takes_the_writers_turn_until_it_ends(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    """A session's transaction (SQLite: BEGIN IMMEDIATE, the write lock) holds the batch
    lock for as long as it is open, so a hot writer waits for it in the kernel and starts
    the moment it ends, whether it commits, rolls back or its connection is closed."""
    path = batch_lock_path(sqlite_engine)
    assert path is not None
    sessions = db.make_session_factory(sqlite_engine)
    for end in ("commit", "rollback", "close"):
        session = sessions()
        assert not _held_elsewhere(path)
        session.execute(text("INSERT INTO items (name) VALUES (:name)"), {"name": end})
        assert _held_elsewhere(path), f"no turn taken before {end}"
        if end == "close":
            session.connection().invalidate()  # the connection is dropped mid-transaction
        else:
            getattr(session, end)()
        assert not _held_elsewhere(path), f"the turn outlived the {end}"
        session.close()
    assert _names(sqlite_url) == ["commit"]


def test_a_session_that_cannot_get_its_turn_fails_as_a_busy_database_would(
    sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded like SQLite's busy timeout: a transaction kept waiting past it fails with
    "database is locked" and changes nothing; once the turn is free it goes through."""
    path = batch_lock_path(sqlite_engine)
    assert path is not None
    monkeypatch.setattr(db, "BUSY_SECONDS", 0.3)
    sessions = db.make_session_factory(sqlite_engine)
    holder = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with sessions() as session, pytest.raises(OperationalError, match="database is locked"):
            session.execute(text("INSERT INTO items (name) VALUES ('waited')"))
        fcntl.flock(holder, fcntl.LOCK_UN)
        with sessions() as session:
            session.execute(text("INSERT INTO items (name) VALUES ('later')"))
            session.commit()
    finally:
        os.close(holder)
    assert _names(sqlite_url) == ["later"]


def test_a_waiting_session_starts_when_the_turn_is_free_and_a_given_up_wait_lets_go(
    sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that finds the turn taken waits for it in the kernel (as the hot
    writers do, so it does not lose the race for the gap between their batches) and
    starts once the holder lets go. A wait given up past the busy timeout does not keep
    the turn when it comes free later: it lets it go at once."""
    path = batch_lock_path(sqlite_engine)
    assert path is not None
    sessions = db.make_session_factory(sqlite_engine)
    before = {t.ident for t in threading.enumerate() if t.name == "turn-waiter"}

    def waiting() -> int:
        return sum(t.name == "turn-waiter" and t.ident not in before for t in threading.enumerate())

    def patient() -> None:
        with sessions() as session:
            session.execute(text("INSERT INTO items (name) VALUES ('patient')"))
            session.commit()

    holder = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        monkeypatch.setattr(db, "BUSY_SECONDS", 0.2)
        with sessions() as session, pytest.raises(OperationalError, match="database is locked"):
            session.execute(text("INSERT INTO items (name) VALUES ('gave up')"))
        monkeypatch.setattr(db, "BUSY_SECONDS", 10.0)
        waiter = threading.Thread(target=patient)
        waiter.start()
        assert poll(waiting, lambda count: count >= 2, 5) == 2  # both wait in the kernel
        assert _names(sqlite_url) == []
        fcntl.flock(holder, fcntl.LOCK_UN)
        waiter.join(10)
        assert not waiter.is_alive()
    finally:
        os.close(holder)
    assert _names(sqlite_url) == ["patient"]
    assert poll(lambda: _held_elsewhere(path), lambda held: not held, 5) is False
    assert poll(waiting, lambda count: count == 0, 5) == 0


def test_a_read_only_session_reads_one_snapshot_without_holding_up_the_writer(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    """What `doorstep audit verify` uses beside the live service: its transaction takes
    neither the writers' turn nor SQLite's write lock, so a writer commits while it is
    open, and it goes on reading the snapshot it began with."""
    path = batch_lock_path(sqlite_engine)
    assert path is not None
    writer = Writer(sqlite_engine)
    writer.start()
    session = db.make_session_factory(sqlite_engine)()
    try:
        db.read_only(session)
        assert session.execute(text("SELECT COUNT(*) FROM items")).scalar_one() == 0
        assert not _held_elsewhere(path)
        assert writer.submit(_insert("during")).result(10) == "during"
        assert session.execute(text("SELECT COUNT(*) FROM items")).scalar_one() == 0
        session.commit()
        assert session.execute(text("SELECT COUNT(*) FROM items")).scalar_one() == 1
    finally:
        session.close()
        writer.stop()


def test_a_read_only_session_refuses_to_write_and_leaves_its_connection_writable(
    engine: Engine, database_url: str
) -> None:
    """A GET's session (`deps.get_session`): a write in it fails at once with the
    database's own error and stores nothing; the pooled connection it used writes again
    in the next, ordinary, transaction."""
    sessions = db.make_session_factory(engine)
    with sessions() as session:
        db.read_only(session)
        assert session.execute(text("SELECT COUNT(*) FROM items")).scalar_one() == 0
        with pytest.raises(DBAPIError, match=r"read-?only"):
            session.execute(text("INSERT INTO items (name) VALUES ('on a get')"))
        session.rollback()
    with sessions() as session:
        session.execute(text("INSERT INTO items (name) VALUES ('on a post')"))
        session.commit()
    assert _names(database_url) == ["on a post"]
