"""The hot paths' database writes, in a process of their own.

Two kinds of work are the service's busiest: the courier's entry decision (authenticate,
every check, the entry, the signed grant, the audit record and the outbox row, the
commit) and storing what hubs send (events, replies, status). In the service process they
compete for one GIL with the HTTP loop and the MQTT client, so the service cannot use a
second core. `HotWriter` runs both in a child process with its own database connection,
in batches (`doorstep.sql`): the service's loop sends it the request or the hub's message,
awaits the committed outcome, and then does what follows as before (publish the command,
the ack, wake the waiting request). Everything held in memory (the hub link, reply
waiters, live streams, limits) stays in the service process.

Both kinds go to the same child on purpose: SQLite drops a connection's page cache
whenever another connection has committed, so two processes writing in turn would each
start cold (a third more CPU per decision, measured). The rare writes that stay in the
service process (the ORM's, the writer thread's sweeps) cost little of that.

What does not change:
- Nothing is answered before it is durable: the child answers after its commit.
- A decision whose caller stopped waiting before its job started never runs (`cancel`).
- Messages from hubs are stored in the order they came.
- SQLite has one writer at a time: the child, the service's writer thread and its ORM
  transactions take turns through the batch lock (`db.batch_lock_path`), so the child
  waits for them without sleeping.
- The audit records the child commits reach the service's live streams
  (`livebus.BUS`), and its batches the service's metrics.

While the child is not running, the service's own writer thread does the work. When the
child dies, the decisions it had in hand fail with 503 (their commands were never
published, so no door was opened), the hubs' messages it had in hand are stored by the
service, and another child is started. The service names each decision's new entry
(`decide`'s `entry_id`), so once the dead child has gone it can end those it may have
committed (`on_lost`): an authorized entry would otherwise hold its door until its
grant expired. A decision whose caller stopped waiting after its job had started (the
job timeout, a cancelled request) is ended the same way once its answer comes back
committed.

The two processes speak over a private socket pair: frames of a 4-byte length and a
pickled list of messages. Pickle is safe here because both ends are this program and the
socket is never exposed; it carries the dataclasses and exceptions as they are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep import db, heap, livebus
from doorstep.access import keys as issuer_keys
from doorstep.access import service
from doorstep.db import ordered_id
from doorstep.errors import ServiceUnavailable
from doorstep.hublink.link import Ingestor
from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import GrantSigner
from doorstep.settings import Settings
from doorstep.sql import BATCH_LIMIT, JOB_TIMEOUT_SECONDS, Job, Writer

log = logging.getLogger(__name__)

T = TypeVar("T")

_LENGTH = struct.Struct(">I")
START_TIMEOUT_SECONDS = 60.0
RESTART_SECONDS = 1.0
UNAVAILABLE = "the entry service restarted; no door was opened, try again"


class HotWriterFailed(Exception):
    """The writer process could not be started or answered wrongly."""


class HotWriter:
    """The service side: start the child, hand it work, await the committed outcomes."""

    def __init__(
        self,
        settings: Settings,
        *,
        kid: str,
        on_batch: Callable[[int, float], None] = lambda _jobs, _seconds: None,
        on_lost: Callable[[list[str], Reason], object] = lambda _entry_ids, _reason: None,
    ) -> None:
        self._settings = settings
        self._kid = kid  # the child must sign with the service's own issuer key
        self._on_batch = on_batch  # told each of the child's batches, as `Writer` tells
        # Told the ids of entries that may have been committed while their commands were
        # never published, and why: those a dead child was deciding (once it has gone),
        # and those committed after their caller stopped waiting.
        self._on_lost = on_lost
        self._lost: dict[str, Reason] = {}
        self._abandoned: dict[int, str] = {}  # request id -> entry id, its caller gone
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._outgoing: list[tuple[Any, ...]] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ready = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def ready(self) -> bool:
        """The child runs and takes work."""
        return self._ready

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the child and wait until it is ready (HotWriterFailed if it cannot be)."""
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def decide(
        self, *, token: str, request: service.EntryRequest, now: datetime
    ) -> service.EntryDecision:
        """`service.decide` in the child, committed; what it raises is raised here.
        ServiceUnavailable if the child is not running or dies with it in hand (then the
        entry, if the child committed it, is ended once the child has gone: `on_lost`);
        TimeoutError if the database does not answer in time (then, if the child commits
        it after all, it is ended too)."""
        loop = asyncio.get_running_loop()
        entry_id = ordered_id("ent")  # made here, so that a lost answer leaves it named
        request_id, answer = self._ask(("decide", token, request, now, entry_id))
        expiry = loop.call_later(JOB_TIMEOUT_SECONDS, _expire, answer)
        try:
            decision: service.EntryDecision = await answer
            return decision
        except ServiceUnavailable:
            self._lost[entry_id] = Reason.SERVICE_RESTARTED
            raise
        except (asyncio.CancelledError, TimeoutError):
            if answer.done() and not answer.cancelled() and answer.exception() is None:
                # Committed and answered, but the caller was cancelled before taking it.
                if answer.result().command is not None:
                    self._end([entry_id], Reason.REQUEST_ABANDONED)
            else:
                # The child drops the job if it has not started, and says so; else its
                # answer comes back to `_receive`, which ends the entry if committed.
                self._abandoned[request_id] = entry_id
                self._send(("cancel", request_id))
            raise
        finally:
            expiry.cancel()

    def submit(self, job: Job[T]) -> concurrent.futures.Future[T]:
        """Run `job` in the child, from any thread. The job must pickle: a module-level
        function of the transaction, or a `functools.partial` of one."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def ask() -> None:
            try:
                _, answer = self._ask(("job", job))
            except ServiceUnavailable as exc:
                result.set_exception(exc)
                return
            answer.add_done_callback(lambda done: _copy(done, result))

        if self._loop is None:
            result.set_exception(ServiceUnavailable(UNAVAILABLE))
        else:
            self._loop.call_soon_threadsafe(ask)
        return result

    def use_signer(self, signer: GrantSigner) -> None:
        """Have the child sign the decisions it receives from now on with `signer` (the
        service took up changed issuer keys: `grants.rotation`). A child started later
        loads the keys itself, and must come up signing with this one."""
        self._kid = signer.kid
        if self._ready:
            self._send(("signer", 0, signer.private_key.private_bytes_raw()))

    def ingest(self, hub_id: str, leaf: str, payload: bytes, now: datetime) -> asyncio.Future[Any]:
        """Store a hub's message (`hublink.link.Ingestor`) in the child; the future holds
        what must follow the commit, or ServiceUnavailable if the child died first."""
        _, answer = self._ask(("ingest", hub_id, leaf, payload, now))
        return answer

    async def stop(self) -> None:
        self._stopping = True
        self._ready = False
        if self._writer is not None:
            self._writer.close()  # the child sees the end of its input and exits
        if self._reader_task is not None:
            self._reader_task.cancel()
        process = self._process
        if process is not None:
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self._fail_waiting()

    def _ask(self, work: tuple[Any, ...]) -> tuple[int, asyncio.Future[Any]]:
        if not self._ready:
            raise ServiceUnavailable(UNAVAILABLE)
        request_id = next(self._ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        answer.add_done_callback(lambda _done: self._waiting.pop(request_id, None))
        self._send((work[0], request_id, *work[1:]))
        return request_id, answer

    # --- the child's lifetime -----------------------------------------------------------

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "doorstep.hotwriter", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        _write_frame(self._writer, [("settings", self._settings)])
        try:
            first = await asyncio.wait_for(_read_frame(reader), START_TIMEOUT_SECONDS)
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            self._process.kill()
            raise HotWriterFailed(
                "the hot paths' writer process did not start; see its errors above"
            ) from exc
        if first[:1] != [("ready", self._kid)]:
            self._process.kill()
            raise HotWriterFailed(
                f"the hot paths' writer process is not ready to sign with {self._kid}: {first!r}"
            )
        self._ready = True
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                for message in await _read_frame(reader):
                    try:
                        self._receive(message)
                    except Exception:  # one message's trouble, not the link's
                        log.exception("handling the writer process's %s failed", message[0])
        except (asyncio.IncompleteReadError, OSError):
            pass  # the child has gone
        except Exception:  # a frame that makes no sense: this child cannot be trusted
            log.exception("the hot paths' writer process sent something unreadable")
        finally:
            self._ready = False
            if self._writer is not None:
                self._writer.close()
            self._fail_waiting()
        if not self._stopping:
            log.error("the hot paths' writer process stopped; starting another")
            if self._process is not None:
                self._process.kill()  # if it has not gone by itself
            await self._respawn()

    async def _respawn(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RESTART_SECONDS)
            if self._process is not None:
                await asyncio.to_thread(self._process.wait)
            self._hand_over_lost()  # the dead child can commit nothing more now
            try:
                await self._spawn()
                return
            except (HotWriterFailed, OSError):
                log.exception("starting the hot paths' writer process failed; retrying")

    def _hand_over_lost(self) -> None:
        lost, self._lost = self._lost, {}
        for reason in dict.fromkeys(lost.values()):
            self._end([entry_id for entry_id, why in lost.items() if why == reason], reason)

    def _end(self, entry_ids: list[str], reason: Reason) -> None:
        try:
            self._on_lost(entry_ids, reason)
        except Exception:  # their grants expire in any case
            log.exception("ending %d entries (%s) failed", len(entry_ids), reason)

    def _receive(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "live":  # an audit record the child committed, for live streams
            livebus.BUS.publish(message[1], message[2])
            return
        if kind == "batch":  # jobs and seconds of one of the child's transactions
            self._on_batch(message[1], message[2])
            return
        if (entry_id := self._abandoned.pop(message[1], None)) is not None:
            # A decision whose caller stopped waiting: committed ("done") with a command
            # nobody will publish, it must not hold the door. Failed or dropped, nothing
            # was committed.
            if kind == "done" and message[2].command is not None:
                self._end([entry_id], Reason.REQUEST_ABANDONED)
            return
        answer = self._waiting.get(message[1])
        if answer is None or answer.done():  # its caller gave up
            return
        if kind == "done":
            answer.set_result(message[2])
        elif kind == "failed":
            answer.set_exception(message[2])

    def _fail_waiting(self) -> None:
        for answer in list(self._waiting.values()):
            if not answer.done():
                answer.set_exception(ServiceUnavailable(UNAVAILABLE))
        # No answer will come for these: the dead child may have committed them.
        for entry_id in self._abandoned.values():
            self._lost[entry_id] = Reason.REQUEST_ABANDONED
        self._abandoned.clear()

    # --- sending: every message of one loop iteration in one frame ---------------------

    def _send(self, message: tuple[Any, ...]) -> None:
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(message)

    def _flush(self) -> None:
        messages, self._outgoing = self._outgoing, []
        if self._writer is None or self._writer.is_closing():
            return
        body = _pickled(messages, self._unsendable)
        self._writer.write(_LENGTH.pack(len(body)) + body)

    def _unsendable(self, message: tuple[Any, ...], error: Exception) -> None:
        answer = self._waiting.get(message[1])
        if answer is not None and not answer.done():
            answer.set_exception(TypeError(f"cannot hand this job to the writer process: {error}"))


class Jobs:
    """Where the service's background threads (notifications, sweeps) send their writer
    jobs: to the writer process while it runs, so that its commits do not alternate with
    this process's (each would start with a cold page cache, and a transaction here holds
    the database while it waits for this process's GIL); else to the writer thread."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self.hot: HotWriter | None = None  # set by the app once the process runs

    def submit(self, job: Job[T]) -> concurrent.futures.Future[T]:
        hot = self.hot
        if hot is not None and hot.ready:
            return hot.submit(job)
        return self._writer.submit(job)


def _copy(done: asyncio.Future[T], into: concurrent.futures.Future[T]) -> None:
    if done.cancelled():
        into.cancel()
    elif (error := done.exception()) is not None:
        into.set_exception(error)
    else:
        into.set_result(done.result())


def _expire(answer: asyncio.Future[Any]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())


def _write_frame(writer: asyncio.StreamWriter, messages: list[Any]) -> None:
    body = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(body)) + body)


def _pickled(
    messages: list[tuple[Any, ...]], unsendable: Callable[[tuple[Any, ...], Exception], None]
) -> bytes:
    """The frame's body; a message that does not pickle (a job that is a closure, a result
    holding a lock) is left out and handed to `unsendable`, not the whole frame lost."""
    try:
        return pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # find which, below
        sendable = []
        for message in messages:
            try:
                pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as error:  # any reason it cannot cross
                unsendable(message, error)
            else:
                sendable.append(message)
        return pickle.dumps(sendable, protocol=pickle.HIGHEST_PROTOCOL)


async def _read_frame(reader: asyncio.StreamReader) -> list[Any]:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    messages: list[Any] = pickle.loads(await reader.readexactly(length))  # noqa: S301
    return messages


# --- the child -------------------------------------------------------------------------


class _Child:
    """One thread: read every request that has arrived, run them as one writer batch
    (`Writer.run_batch`), send every answer in one frame; again. No hand-over between
    threads, so a request costs the child no more wake-ups than the read and the send."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self._buffer = bytearray()
        self._outgoing: list[tuple[Any, ...]] = []
        self._ingestor = Ingestor()
        self._signer: GrantSigner | None = None

    def serve(self) -> None:
        first = self._read()
        if not first or first[0][0] != "settings":
            return
        settings: Settings = first[0][1]
        engine = db.make_engine(
            settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        keys = issuer_keys.load_or_create(settings.data_dir / "keys")
        writer = Writer(engine, name="hot-writer", on_batch=self._batch)
        # The audit records this process commits go to the service's live streams, in the
        # same frame as the answers and before them.
        livebus.BUS.forward(self._forward)
        self._signer = keys.signer
        self._send([("ready", keys.signer.kid)])
        try:
            while (messages := self._read()) is not None:
                self._run(messages, writer, settings, self._signer)
        finally:
            writer.close_batches()
            engine.dispose()

    def _ingestion(self, message: tuple[Any, ...]) -> Job[Any]:
        _, _, hub_id, leaf, payload, now = message
        return lambda tx: self._ingestor.store(tx, hub_id, leaf, payload, now)

    def _unsendable(self, message: tuple[Any, ...], error: Exception) -> None:
        if message[0] in ("done", "failed"):  # its caller still hears how it ended
            failure = RuntimeError(f"the job's outcome cannot be sent back: {error}")
            self._send([("failed", message[1], failure)])
        else:
            log.error("dropped a %s message that cannot be sent back: %s", message[0], error)

    def _forward(self, home_id: str, record: dict[str, Any]) -> None:
        self._outgoing.append(("live", home_id, record))

    def _batch(self, jobs: int, seconds: float) -> None:
        self._outgoing.append(("batch", jobs, seconds))

    def _run(self, messages: list[Any], writer: Writer, settings: Settings, signer: Any) -> None:
        work: dict[int, Job[Any]] = {}  # in the order it came
        for message in messages:
            kind, request_id = message[0], message[1]
            if kind == "cancel":  # its caller gave up before the job ran
                if work.pop(request_id, None) is not None:
                    self._outgoing.append(("cancelled", request_id))
            elif kind == "decide":
                work[request_id] = _decision(message, settings, signer)
            elif kind == "ingest":
                work[request_id] = self._ingestion(message)
            elif kind == "job":
                work[request_id] = message[2]
            elif kind == "signer":  # from the next decision on (`HotWriter.use_signer`)
                key = Ed25519PrivateKey.from_private_bytes(message[2])
                signer = self._signer = GrantSigner(key)
        for chunk in _chunks(list(work.items()), BATCH_LIMIT):
            jobs = [job for _, job in chunk]
            for (request_id, _), done in zip(chunk, writer.run_batch(jobs), strict=True):
                self._outgoing.append(_answer(request_id, done))
        outgoing, self._outgoing = self._outgoing, []
        if outgoing:
            self._send(outgoing)

    def _read(self) -> list[Any] | None:
        """Every message of every complete frame received so far, waiting until there
        is at least one; None once the service has closed its end."""
        messages: list[Any] = []
        while True:
            while len(self._buffer) >= _LENGTH.size:
                (length,) = _LENGTH.unpack_from(self._buffer)
                if len(self._buffer) < _LENGTH.size + length:
                    break
                body = bytes(self._buffer[_LENGTH.size : _LENGTH.size + length])
                del self._buffer[: _LENGTH.size + length]
                messages.extend(pickle.loads(body))  # noqa: S301 - our parent's own socket
            # With something in hand, take only what has already arrived.
            self._connection.setblocking(not messages)
            try:
                chunk = self._connection.recv(1 << 16)
            except BlockingIOError:
                return messages
            if not chunk:
                return None
            self._buffer += chunk

    def _send(self, messages: list[Any]) -> None:
        body = _pickled(messages, self._unsendable)
        self._connection.setblocking(True)
        self._connection.sendall(_LENGTH.pack(len(body)) + body)


def _decision(message: tuple[Any, ...], settings: Settings, signer: Any) -> Job[Any]:
    _, _, token, request, now, entry_id = message
    return lambda tx: service.decide(
        tx, token=token, request=request, now=now, settings=settings.entry, signer=signer,
        entry_id=entry_id,
    )  # fmt: skip


def _answer(request_id: int, done: Future[Any]) -> tuple[Any, ...]:
    error = done.exception()
    if error is None:
        return ("done", request_id, done.result())
    try:
        pickle.dumps(error)
    except Exception:  # an exception that cannot cross: say what it was
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return ("failed", request_id, error)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="hot-writer %(levelname)s %(name)s: %(message)s"
    )
    # Ctrl-C in a terminal, or a service manager stopping the whole group, signals this
    # process too. It ends with the service instead: when the service's end of the
    # socket closes, after its last answer is read (the service closes it on its way out,
    # and the kernel does if it dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    connection = socket.socket(fileno=int(argv[0]))
    heap.freeze_startup()
    try:
        _Child(connection).serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the service went away: nothing left to answer
    finally:
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
