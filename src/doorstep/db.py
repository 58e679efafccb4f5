"""Database plumbing: engine, sessions, the declarative base, migrations.

SQLite (the default, one file in the data dir, WAL) and PostgreSQL (by URL) run the same
models and the same Alembic migrations. Services only add and flush; the caller that owns
the unit of work (a request, an ingest batch, a CLI command) commits. Work that must follow
a commit (publishing a command to a hub) is queued with `after_commit` so it never runs
for a transaction that rolled back.

On SQLite every transaction the ORM begins is `BEGIN IMMEDIATE` (the write lock up front),
taken in turn with the hot paths' writers through the batch lock (`TurnTakingConnection`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, DateTime, Engine, create_engine, event, exc, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which drops the zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def ordered_id(prefix: str) -> str:
    """An id for a table that grows by appends at request rate (entries, the outbox),
    ordered like `ordered_hex` but written in 17 characters of base 32: 42 bits of
    milliseconds (good until 2109), then 43 random bits. An entry id rides in every grant,
    which must stay within 256 bytes even with a phone key: this is one character longer
    than the 16 random hex digits of `new_id`."""
    value = (time.time_ns() // 1_000_000) << 43 | secrets.randbits(43)
    digits = []
    for _ in range(17):
        digits.append(_BASE32[value & 31])
        value >>= 5
    return f"{prefix}-{''.join(reversed(digits))}"


# Crockford's base 32 in lower case: its digits sort (as bytes) in the order they count.
_BASE32 = "0123456789abcdefghjkmnpqrstvwxyz"


def ordered_hex(random_bytes: int = 6) -> str:
    """The creation time in milliseconds (12 hex digits), then `random_bytes` random
    bytes. New keys land at the right edge of their index instead of on a random page,
    so a writer batch dirties and commits a page or two per index, not one page per row;
    at millions of rows the pages touched stay in cache. Ids are not secrets (every read
    checks who asks); 48 random bits keep two ids of the same millisecond apart."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(random_bytes)}"


BUSY_SECONDS = 30.0  # how long a SQLite transaction waits for another writer's turn


def make_engine(url: str, *, sqlite_synchronous: str = "NORMAL") -> Engine:
    """The engine for `url`. Its errors never show a statement's parameters
    (`hide_parameters`): they reach the log, and parameters are token digests, emails,
    password hashes."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={
                "check_same_thread": False,
                "timeout": BUSY_SECONDS,
                "factory": TurnTakingConnection,
            },
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(
        url, hide_parameters=True, pool_size=20, max_overflow=20, pool_pre_ping=True
    )
    event.listen(engine, "begin", _begin_postgresql)
    return engine


def _begin_postgresql(connection: Any) -> None:
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")


class TurnTakingConnection(sqlite3.Connection):
    """A SQLite connection whose transactions begun by SQLAlchemy (sessions,
    `engine.begin()`) first take the database's batch lock (`batch_lock_path`): the file
    lock the hot paths' writers hold while a batch is open (`doorstep.sql.Writer`, in
    this process or the writer process). A writer that finds a session's transaction open
    then sleeps in the kernel until it ends, instead of in SQLite's busy handler, whose
    sleeps grow to 100 ms between tries: an ORM read (the bench's own entry counts, and
    so a resident's page or a metrics scrape) stalled the entry decisions queued behind
    it by up to a third of a second. The turn ends with the transaction (commit,
    rollback, or the connection closed).

    Taking a turn waits in the kernel too (`_wait_for_lock`), at most `timeout` seconds,
    then fails as SQLite's own busy timeout does ("database is locked"), so a
    transaction kept open while its code waits for a writer job ends in an error rather
    than a deadlock. Read-only transactions (`read_only`) take no turn."""

    turn_path: Path | None = None  # the batch lock's file
    turn_fd: int | None = None  # this connection's own opening of it
    waited_fd: int | None = None  # an opening that was waited on, holding the turn
    in_turn = False
    reading = False  # in a read-only transaction (`read_only`): writes refused

    def begin_reading(self) -> None:
        """A deferred transaction that may not write: one snapshot, no lock, no turn."""
        self.execute("PRAGMA query_only = ON")
        self.reading = True
        self.execute("BEGIN")

    def take_turn(self, timeout: float) -> None:
        if self.turn_fd is None or self.turn_path is None or self.in_turn:
            return
        try:
            fcntl.flock(self.turn_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.waited_fd = _wait_for_lock(self.turn_path, timeout)
        self.in_turn = True

    def end_turn(self) -> None:
        if not self.in_turn:
            return
        self.in_turn = False
        waited, self.waited_fd = self.waited_fd, None
        if waited is not None:
            os.close(waited)  # releases the lock with it
        elif self.turn_fd is not None:
            fcntl.flock(self.turn_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._ended()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._ended()

    def _ended(self) -> None:
        """The transaction is over: give the turn back, or let the connection write again."""
        self.end_turn()
        if self.reading:
            self.reading = False
            self.execute("PRAGMA query_only = OFF")

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._close_turn_fd()

    def __del__(self) -> None:
        # A connection dropped unclosed still ends its turn. At interpreter exit the
        # modules this needs may already be gone; the process's end releases the lock.
        with contextlib.suppress(Exception):
            self._close_turn_fd()

    def _close_turn_fd(self) -> None:
        self.end_turn()
        fd, self.turn_fd = self.turn_fd, None
        if fd is not None:
            os.close(fd)  # releases the lock with it


def _wait_for_lock(path: Path, timeout: float) -> int:
    """Take the exclusive `flock` on the file at `path` within `timeout` seconds; the
    open file descriptor that holds it (closing it ends the turn).

    Python's `flock` has no timeout, and retrying a non-blocking one with pauses loses
    the race for the gaps between the hot writers' batches, which wait in the kernel
    and are woken the moment the lock is free: under a busy writer a resident's write
    waited tens of milliseconds, up to 150, that way. So a helper thread waits in the
    kernel, on an opening of the file of its own; if it is given up on, it closes that
    opening, and so lets the lock go again, as soon as it gets it."""
    waiter = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    granted = threading.Event()
    decided = threading.Lock()
    abandoned = False

    def wait() -> None:
        try:
            fcntl.flock(waiter, fcntl.LOCK_EX)
        except OSError:
            log.exception("waiting for the database's batch lock failed")
            os.close(waiter)
            return
        with decided:
            if abandoned:
                os.close(waiter)
            else:
                granted.set()

    threading.Thread(target=wait, name="turn-waiter", daemon=True).start()
    if not granted.wait(timeout):
        with decided:
            if not granted.is_set():
                abandoned = True
                raise sqlite3.OperationalError(
                    "database is locked: another writer's turn did not end"
                )
    return waiter


def batch_lock_path(engine: Engine) -> Path | None:
    """Where the writers of `engine`'s database take turns (`doorstep.sql.Writer`,
    `TurnTakingConnection`): beside a SQLite file; none for PostgreSQL (its row locks
    order concurrent writers) or an in-memory database (one connection, one process)."""
    if engine.dialect.name != "sqlite" or in_memory(engine):
        return None
    database = Path(str(engine.url.database))
    return database.with_name(database.name + "-writer.lock")


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    if synchronous not in {"FULL", "NORMAL"}:
        raise ValueError("sqlite synchronous must be FULL or NORMAL")
    lock_path = batch_lock_path(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if lock_path is not None and isinstance(dbapi_connection, TurnTakingConnection):
            dbapi_connection.turn_path = lock_path
            dbapi_connection.turn_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        # pysqlite's own transaction handling is switched off so that SQLAlchemy's BEGIN
        # is the one that runs; BEGIN IMMEDIATE takes the write lock up front, which keeps
        # the audit chain's read-then-append from racing another writer.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # The writer runs each job in a savepoint (`doorstep.sql`); SQLite keeps the pages
        # a savepoint may have to restore in a sub-journal, by default a temporary file.
        # In memory it costs a copy instead of file writes: a tenth of the decision's
        # writer time (bench/README.md). What else goes there (sorts, temporary indexes)
        # is bounded by the queries, which page their results.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        dbapi_connection = connection.connection.driver_connection
        if connection.get_execution_options().get(_READ_ONLY):
            if isinstance(dbapi_connection, TurnTakingConnection):
                dbapi_connection.begin_reading()
            else:
                connection.exec_driver_sql("BEGIN")  # deferred: a reader's snapshot
            return
        if isinstance(dbapi_connection, TurnTakingConnection):
            try:
                dbapi_connection.take_turn(BUSY_SECONDS)
            except sqlite3.OperationalError as error:  # as SQLAlchemy wraps SQLite's own
                raise exc.OperationalError("BEGIN IMMEDIATE", None, error) from error
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if isinstance(dbapi_connection, TurnTakingConnection):
                dbapi_connection.end_turn()
            raise


_READ_ONLY = "doorstep_read_only"


def read_only(session: Session) -> None:
    """Make the transaction `session` is about to begin a reader's (the next one only);
    call it before that transaction's first statement. On SQLite that is a deferred
    BEGIN under `PRAGMA query_only`: it reads one snapshot throughout, never takes the
    writers' turn nor the write lock, and so never holds up a writer however long it
    reads. On PostgreSQL it is a READ ONLY transaction (its readers never block writers
    anyway). On both, a write in it fails at once, with the database's own error.
    For every GET request (`doorstep.deps.get_session`) and for scans an operator runs
    beside the live service, such as `doorstep audit verify`."""
    session.connection(execution_options={_READ_ONLY: True})


def busy(error: BaseException) -> bool:
    """A database error that says only "not now", after which the transaction was rolled
    back and the same request may simply be made again: SQLite's lock not had within
    the busy timeout; on PostgreSQL a deadlock, a serialization failure or a lock wait
    given up. As the driver raises it, or wrapped by SQLAlchemy."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig
    if isinstance(error, sqlite3.OperationalError):
        return "database is locked" in str(error)
    if isinstance(error, psycopg.Error):  # class 40, transaction rollback; lock_not_available
        state = error.sqlstate or ""
        return state.startswith("40") or state == "55P03"
    return False


def in_memory(engine: Engine) -> bool:
    """A SQLite database in memory: no other process can open it."""
    database = engine.url.database or ""
    return engine.dialect.name == "sqlite" and (
        database in ("", ":memory:") or "mode=memory" in database
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "after_commit", _run_after_commit)
    event.listen(factory, "after_rollback", _drop_after_commit)
    return factory


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action` once the session's current transaction has committed."""
    session.info.setdefault("after_commit", []).append(action)


def _run_after_commit(session: Session) -> None:
    actions = session.info.pop("after_commit", [])
    for action in actions:
        action()


def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)


class RoleSetupError(Exception):
    """The PostgreSQL roles cannot be set up as `database_owner_url` asks (the message
    says why and what to do)."""


def migrate(engine: Engine, owner_url: str | None) -> None:
    """Bring the schema to the newest migration: as the engine's own role, or with
    `owner_url` (`Settings.database_owner_url`) as the schema's owner, after which the
    engine's role is given only what the service needs (`grant_service_role`)."""
    if owner_url is None:
        upgrade(engine)
        return
    role = engine.url.username
    if role is None:
        raise RoleSetupError("database_url names no role to log in as")
    owner = make_engine(owner_url)
    try:
        with owner.begin() as connection:
            _check_service_role(connection, role)
        upgrade(owner)
        with owner.begin() as connection:
            _one_at_a_time(connection)  # concurrent GRANTs fail: "tuple concurrently updated"
            grant_service_role(connection, role)
    finally:
        owner.dispose()


def _check_service_role(connection: Connection, role: str) -> None:
    """The service's role exists and owns no part of the schema (checked before the
    migrations, which could not even read a schema another role owns)."""
    owner_of_audit, role_exists = connection.execute(
        text(
            "SELECT (SELECT tableowner FROM pg_tables"
            "  WHERE schemaname = current_schema() AND tablename = 'audit_events'),"
            " EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :role)"
        ),
        {"role": role},
    ).one()
    if not role_exists:
        raise RoleSetupError(f"the role {role!r} of database_url does not exist")
    if owner_of_audit == role:
        raise RoleSetupError(
            f"the schema belongs to {role!r}, the role of database_url, which could then"
            " drop the audit log's triggers; hand it to the owner role first (as a"
            f" superuser: REASSIGN OWNED BY {role} TO <owner role>)"
        )


def grant_service_role(connection: Connection, role: str) -> None:
    """As the schema's owner: let `role` read and write every table, but not change or
    delete the audit log, nor touch the migrations' own table. Owning nothing, it cannot
    alter a table or drop the audit log's triggers either (DESIGN principle 5)."""
    schema = connection.execute(text("SELECT current_schema()")).scalar_one()
    quote = connection.dialect.identifier_preparer.quote
    who, where = quote(role), quote(schema)
    for statement in (
        f"GRANT USAGE ON SCHEMA {where} TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {where} TO {who}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {where} TO {who}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM {who}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {who}",
    ):
        connection.exec_driver_sql(statement)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration. Processes that start at once on one
    database take turns (`_one_at_a_time`): the later one then finds the schema current,
    instead of failing on tables the other is creating."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        _one_at_a_time(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# The pg_advisory_xact_lock key that serializes schema changes ("DOORMIGR" in ASCII).
MIGRATION_LOCK = 0x444F4F524D494752


def _one_at_a_time(connection: Connection) -> None:
    """Wait until no other process is changing this database's schema; the turn lasts
    until `connection`'s transaction ends. On PostgreSQL a transaction-scoped advisory
    lock: the migrations' DDL runs in that one transaction, and the lock cannot outlive
    it, even in a pooled connection. SQLite needs none: the transaction began with
    BEGIN IMMEDIATE, after the batch lock (`TurnTakingConnection`), so it has the file's
    write lock already."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
