"""Hand-written SQL for the hot paths, and the writer thread that runs it in batches.

The courier's entry decision and the hub ingest run thousands of times a second; through
the ORM each costs milliseconds on these machines. Here they are a few plain statements
on the DBAPI connection, run by one `Writer` per process that takes queued jobs, runs a
batch of them in one transaction (each in its own savepoint, so one failing job rolls
back alone), commits once, and only then resolves each job's future. Nothing is answered
before it is durable. A `Writer` runs on its own thread, or on its caller's
(`Writer.run_batch`, in the hot paths' writer process, `doorstep.hotwriter`). On SQLite
the writers of every process, and the ORM's transactions (`db.TurnTakingConnection`),
take turns through a file lock (`batch_lock_path`) rather than SQLite's sleeping busy
handler, and a writer's commits leave copying the write-ahead log back into the
database to a thread of its own (`Checkpointer`).

`Tx` hides the two dialects' differences: placeholders (`?` is rewritten to `%s` for
psycopg; `?j` marks a JSON value), and how timestamps are stored (SQLite keeps the text
SQLAlchemy writes, naive UTC; PostgreSQL keeps timestamptz).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import orjson
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from doorstep.db import batch_lock_path

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[["Tx"], T]
BATCH_LIMIT = 256
JOB_TIMEOUT_SECONDS = 30.0
RETRY_SECONDS = 1.0
CHECKPOINT_SECONDS = 0.1
RESTART_FRAMES = 1000  # SQLite's own automatic checkpoint size, in pages


class Tx:
    """One transaction's worth of plain SQL on a DBAPI connection."""

    def __init__(self, dbapi_connection: Any, dialect: str, session: Session | None = None) -> None:
        self._connection = dbapi_connection
        self.postgres = dialect == "postgresql"
        self._cursor = dbapi_connection.cursor()
        self._session = session
        self._after_commit: list[Callable[[], None]] = []
        self._marks: dict[str, int] = {}  # savepoint -> how many actions it started with

    @classmethod
    def of_session(cls, session: Session) -> Tx:
        """The session's own connection and transaction, for code shared with the ORM."""
        connection = session.connection()
        return cls(connection.connection.driver_connection, connection.dialect.name, session)

    def on_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once this transaction has committed (never if it rolls back, or
        if the writer job that asked rolls back to its savepoint)."""
        if self._session is not None:
            from doorstep.db import after_commit

            after_commit(self._session, action)
        else:
            self._after_commit.append(action)

    def _run_after_commit(self) -> None:
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            try:
                action()
            except Exception:  # the process edge: the data is committed either way
                log.exception("after-commit action failed")

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cursor.execute(_translate(sql, self.postgres), params)
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(_translate(sql, self.postgres), params)
        return [tuple(row) for row in self._cursor.fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(_translate(sql, self.postgres), params)
        return int(self._cursor.rowcount)

    def time(self, value: datetime | None) -> Any:
        if value is None or self.postgres:
            return value
        # What SQLAlchemy writes ("%Y-%m-%d %H:%M:%S.%f", naive UTC), through isoformat:
        # half the cost of strftime, called about ten times per entry decision.
        return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]

    def day(self, value: date) -> Any:
        """A calendar date as the dialect stores it (SQLite: ISO text)."""
        return value if self.postgres else value.isoformat()

    def parse_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)

    def json(self, value: Any) -> str:
        return orjson.dumps(value).decode()

    def begin(self) -> None:
        """Start the writer's batch transaction on the raw connection (SQLAlchemy's
        transaction bookkeeping costs more than the statements of a small batch). SQLite
        takes the write lock up front, as the engine's own BEGIN does; psycopg begins
        implicitly at the first statement."""
        if not self.postgres:
            self._cursor.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self.postgres:
            self._connection.commit()
        else:
            self._cursor.execute("COMMIT")

    def rollback_quietly(self) -> None:
        """Roll back what is left of a failed batch; the connection is dropped after."""
        try:
            self._connection.rollback()
        except Exception:  # the connection is already broken: nothing to undo
            log.debug("rollback after a failed batch failed too", exc_info=True)

    def savepoint(self, name: str) -> None:
        self._cursor.execute(f"SAVEPOINT {name}")
        self._marks[name] = len(self._after_commit)

    def release(self, name: str) -> None:
        self._cursor.execute(f"RELEASE SAVEPOINT {name}")
        self._marks.pop(name, None)

    def rollback_to(self, name: str) -> None:
        """Undo everything since `savepoint(name)`, the actions asked for since
        (`on_commit`) too: what was rolled back never happened."""
        self._cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
        self._cursor.execute(f"RELEASE SAVEPOINT {name}")
        del self._after_commit[self._marks.pop(name, len(self._after_commit)) :]


@cache
def _translate(sql: str, postgres: bool) -> str:
    if not postgres:
        return sql.replace("?j", "?")
    return sql.replace("?j", "%s::json").replace("?", "%s")


class Submits(Protocol):
    """Takes writer jobs from any thread: a `Writer`, or `hotwriter.Jobs`."""

    def submit(self, job: Job[T]) -> concurrent.futures.Future[T]: ...


class Writer:
    """One thread, one connection, many jobs per transaction."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str = "db-writer",
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._engine = engine
        # SQLite: a file lock that every writer of the database, in any process, holds while
        # its batch transaction is open (`batch_lock_path`). A writer that finds the
        # lock taken sleeps in the kernel and wakes the moment it is released; without
        # it, SQLite's busy handler polls, sleeping 1, 2, 5, 10... ms between tries, and
        # two processes writing at rate lose most of their time to those sleeps.
        self._batch_lock = batch_lock_path(engine)
        self._lock_fd: int | None = None
        self._checkpointer = (
            Checkpointer(engine, self._batch_lock) if self._batch_lock is not None else None
        )
        self._here: tuple[Any, Tx] | None = None  # `run_batch`'s connection
        # Told each committed batch's job count and seconds from BEGIN to COMMIT.
        self._on_batch = on_batch
        self._jobs: queue.SimpleQueue[_Pending[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)
        if self._lock_fd is not None and not self._thread.is_alive():
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._checkpointer is not None:
            self._checkpointer.stop()

    def submit(
        self, job: Job[T], *, then: Callable[[T], None] | None = None
    ) -> concurrent.futures.Future[T]:
        """Queue `job`; its future resolves after the transaction that ran it commits.
        `then` runs on the writer thread right after that commit."""
        pending: _Pending[T] = _Pending(job, concurrent.futures.Future(), then)
        self._jobs.put(pending)
        return pending.future

    async def run(
        self,
        job: Job[T],
        *,
        timeout: float = JOB_TIMEOUT_SECONDS,
        abandoned: Callable[[T], object] | None = None,
    ) -> T:
        """Run `job` and await its committed result; TimeoutError if the database stalls.
        A job that has not started when its caller stops waiting never runs; one that
        has goes on, and if it commits, its result goes to `abandoned` (on the writer
        thread), for what the caller would have done with it and now cannot.

        The answer is an asyncio future that the writer resolves together with the rest
        of its batch, in one hop onto the event loop (`_deliver`): cheaper than a wrapped
        concurrent future, which crosses threads once per job."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()
        pending: _Pending[T] = _Pending(job, concurrent.futures.Future(), None, answer)
        self._jobs.put(pending)
        expiry = loop.call_later(timeout, _expire, answer)
        try:
            return await answer
        except (asyncio.CancelledError, TimeoutError):
            if not pending.future.cancel() and abandoned is not None:  # it has started
                pending.future.add_done_callback(functools.partial(_committed, abandoned))
            raise
        finally:
            expiry.cancel()

    def run_batch(self, jobs: Sequence[Job[Any]]) -> list[concurrent.futures.Future[Any]]:
        """Run `jobs` as one batch on the calling thread, for a writer whose thread is
        not started (the child of `doorstep.hotwriter`, which reads its requests and runs
        them in the same thread). Returns their futures, settled: each job's result, or its own
        error, or the batch's when the batch failed as a whole (the connection is then
        replaced at the next batch)."""
        batch: list[_Pending[Any]] = [
            _Pending(job, concurrent.futures.Future(), None) for job in jobs
        ]
        try:
            if self._here is None:
                connection = self._engine.connect()
                tx = self._tx(connection)
                self._here = (connection, tx)
            self._execute(self._here[0], self._here[1], batch)
        except _BatchFailed:
            self.close_batches()
        except Exception as exc:  # connecting failed: the next batch tries again
            log.exception("writer cannot reach the database")
            _settle_all([(pending, None, exc) for pending in batch])
        return [pending.future for pending in batch]

    def close_batches(self) -> None:
        """Close the connection `run_batch` opened, and the batch lock."""
        if self._here is not None:
            self._here[0].close()
            self._here = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._checkpointer is not None:
            self._checkpointer.stop()

    def _tx(self, connection: Any) -> Tx:
        """The batches' `Tx` on `connection`. On SQLite its commits do not copy the
        write-ahead log back into the database (SQLite's automatic checkpoint, every
        1,000 pages): on these machines that copy and its fsyncs held the committing
        batch for about 13 ms, ten times a second at the decision bench's rate. The
        `Checkpointer` thread does it instead, beside the batches."""
        tx = Tx(connection.connection.driver_connection, connection.dialect.name)
        if self._checkpointer is not None:
            tx._cursor.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer.start()
        return tx

    def _run(self) -> None:
        # A batch that fails as a whole (the connection broke, the database restarted)
        # fails its jobs and the writer starts over on a fresh connection.
        while True:
            try:
                with self._engine.connect() as connection:
                    tx = self._tx(connection)
                    while True:
                        batch = self._take()
                        if batch is None:
                            return
                        self._execute(connection, tx, batch)
            except _BatchFailed:
                continue
            except Exception:  # the process edge: connecting failed; try again
                log.exception("writer cannot reach the database; retrying")
                time.sleep(RETRY_SECONDS)

    def _take(self) -> list[_Pending[Any]] | None:
        first = self._jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < BATCH_LIMIT:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._jobs.put(None)
                break
            batch.append(item)
        return batch

    def _execute(self, connection: Any, tx: Tx, batch: list[_Pending[Any]]) -> None:
        outcomes: list[tuple[_Pending[Any], Any, BaseException | None]] = []
        started = time.perf_counter()
        with self._locked():
            try:
                tx.begin()
                for pending in batch:
                    outcomes.append(_attempt(tx, pending))
                tx.commit()
            except Exception as exc:  # the commit itself failed: every job in it failed
                log.exception("write batch failed")
                tx._after_commit.clear()
                tx.rollback_quietly()
                failure: Exception | None = exc
            else:
                failure = None
        if failure is not None:
            _settle_all([(pending, None, failure) for pending in batch])
            raise _BatchFailed from failure
        if self._on_batch is not None:
            self._on_batch(len(batch), time.perf_counter() - started)
        if self._checkpointer is not None:
            self._checkpointer.written()
        tx._run_after_commit()
        _settle_all(outcomes)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._batch_lock is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._batch_lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)


class Checkpointer:
    """Copies a SQLite database's write-ahead log back into the database file, on a
    thread and a connection of its own, at most every `CHECKPOINT_SECONDS` and only
    after a commit (`written`), for the `Writer` whose connection no longer does it.

    A round is SQLite's PASSIVE checkpoint, which never waits for a reader or a writer
    and copies only what every reader is done with, while batches go on (the sqlite3
    module releases the GIL as it runs). A log copied back entirely is reused from its
    start by the next batch that begins after, but only if none was open as the copy
    completed: under a steady stream of batches that is rare, and the log would grow
    without bound. So once it holds `RESTART_FRAMES` pages, the round ends with a
    second checkpoint under the batch lock (`batch_lock_path`), short since it copies
    only what the batches added meanwhile, and no batch is open as it completes. If a
    checkpoint fails, the log keeps growing (nothing is lost), the error is logged, and
    the next commit tries again."""

    def __init__(self, engine: Engine, lock_path: Path) -> None:
        self._engine = engine
        self._lock_path = lock_path
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.rounds = 0  # completed, failed ones included

    def start(self) -> None:
        with self._guard:
            if self._thread is None:
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="db-checkpoint", daemon=True)
                self._thread.start()

    def written(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        with self._guard:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            self._wake.set()
            thread.join(timeout=10)

    def _run(self) -> None:
        connection: Any = None
        # Its own open file, so the batch lock (flock) is held against this process's
        # writer too.
        lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                try:
                    if connection is None:
                        connection = self._engine.raw_connection()
                    self._checkpoint(connection.driver_connection, lock_fd)
                except Exception:  # the thread's edge: the log only grows until next time
                    log.exception("checkpoint of the write-ahead log failed")
                    if connection is not None:
                        connection.invalidate()
                        connection = None
                self.rounds += 1
                if self._stopping.wait(CHECKPOINT_SECONDS):
                    return
        finally:
            os.close(lock_fd)
            if connection is not None:
                connection.close()

    @staticmethod
    def _checkpoint(driver_connection: Any, lock_fd: int) -> None:
        # Straight on the driver: SQLAlchemy would open a transaction first.
        _busy, logged, _copied = driver_connection.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        if logged >= RESTART_FRAMES:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)


def _committed(then: Callable[[T], object], done: concurrent.futures.Future[T]) -> None:
    if done.cancelled() or done.exception() is not None:
        return  # nothing was committed
    try:
        then(done.result())
    except Exception:  # the writer thread's edge
        log.exception("handling a result committed after its caller gave up failed")


def _attempt(tx: Tx, pending: _Pending[Any]) -> tuple[_Pending[Any], Any, BaseException | None]:
    if not pending.future.set_running_or_notify_cancel():
        return pending, None, None  # its caller gave up before it ran: do nothing
    tx.savepoint("job")
    try:
        result = pending.job(tx)
    except Exception as exc:
        tx.rollback_to("job")  # with the actions it asked for: they never happened
        return pending, None, exc
    tx.release("job")
    return pending, result, None


def _settle_all(outcomes: list[tuple[_Pending[Any], Any, BaseException | None]]) -> None:
    """Settle each job, then hand the awaited answers to their event loops, one hop per
    loop for the whole batch."""
    answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for pending, result, error in outcomes:
        pending.settle(result, error)
        if pending.answer is not None:
            answers.setdefault(pending.answer.get_loop(), []).append(
                (pending.answer, result, error)
            )
    for loop, delivered in answers.items():
        try:
            loop.call_soon_threadsafe(_deliver, delivered)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            log.debug("a writer result arrived after its event loop closed")


def _deliver(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for answer, result, error in answers:
        if answer.done():  # its caller gave up (timeout, cancelled)
            continue
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)


def _expire(answer: asyncio.Future[Any]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())


class _BatchFailed(Exception):
    pass


@dataclass
class _Pending(Generic[T]):
    job: Job[T]
    future: concurrent.futures.Future[T]
    then: Callable[[T], None] | None
    answer: asyncio.Future[T] | None = None  # `Writer.run`'s, resolved on its own loop

    def settle(self, result: T, error: BaseException | None) -> None:
        if self.future.cancelled():
            return
        if error is not None:
            self.future.set_exception(error)
            return
        if self.then is not None:
            try:
                self.then(result)
            except Exception:  # the process edge: the write is committed either way
                log.exception("after-commit action failed")
        self.future.set_result(result)
