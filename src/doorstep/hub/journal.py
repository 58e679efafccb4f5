"""The hub's durable journal (SQLite, WAL, synchronous=FULL).

Every event is written here, signed and hash-chained, *before* it is published; it stays
until the service acknowledges it. Each process start is a new boot epoch; sequence
numbers restart at 1 in each epoch, so (hub, epoch, seq) names an event forever.
The journal also remembers every grant token id the hub has accepted (so a grant is
single-use across restarts), the reply to every command it has handled (so a
redelivered command is answered, not executed twice), and the entries a lock command
ended (so an unlock for one of them that arrives after its lock is refused), and for a
lock driver the highest event number its lock has sent (`lock_event_mark`: so an old
event the lock sends again after a restart of the hub is not taken as news).

Token ids and ended entries are forgotten once the hub's clock says no grant needing
them can still be accepted. That clock can jump ahead and come back (a bad NTP answer):
so the journal also keeps how far it has forgotten (`forgotten_through`, in meta), and
no grant that expires by then is accepted again (`use_token`).

A write the storage refuses (a full disk: SQLITE_FULL; a failing one: a disk I/O
error) raises `JournalError` and keeps nothing of that write: the transaction is rolled
back, and the next write starts afresh, so the journal works again once there is room.
Rows journalled before stay as they were.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.protocol.messages import GENESIS_HASH, Event, Reply, b64encode

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    epoch INTEGER NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (epoch, seq));
CREATE TABLE IF NOT EXISTS used_tokens (
    token_id BLOB PRIMARY KEY, expires INTEGER NOT NULL, used_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY, reply BLOB NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS visits (
    access_point TEXT PRIMARY KEY, entry_id TEXT NOT NULL, command_id TEXT NOT NULL,
    replied INTEGER NOT NULL, opened INTEGER NOT NULL, opened_at REAL);
CREATE TABLE IF NOT EXISTS ended_entries (
    entry_id TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lock_event_marks (
    lock TEXT PRIMARY KEY, event_number INTEGER NOT NULL);
"""

_INSERT_EVENT = "INSERT INTO events (epoch, seq, body) VALUES (?, ?, ?)"
_SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
_INSERT_USED = "INSERT INTO used_tokens (token_id, expires, used_at) VALUES (?, ?, ?)"
_COMMAND_REPLY = "SELECT reply FROM commands WHERE command_id = ?"
_RECORD_COMMAND = "INSERT OR REPLACE INTO commands (command_id, reply, at) VALUES (?, ?, ?)"
_SAVE_VISIT = (
    "INSERT OR REPLACE INTO visits (access_point, entry_id, command_id, replied, opened,"
    " opened_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_ACKNOWLEDGE = "DELETE FROM events WHERE epoch = ? AND seq <= ?"
_ENTRY_ENDED = "SELECT 1 FROM ended_entries WHERE entry_id = ? AND until >= ?"
_FORGOTTEN_THROUGH = "forgotten_through"


class JournalError(Exception):
    """The journal could not write (the disk is full or failing); nothing of that write
    was kept."""


def _storage_failed(exc: sqlite3.OperationalError) -> JournalError:
    return JournalError(f"the journal cannot write: {exc}")


class Journal:
    def __init__(self, path: Path, *, hub_id: str, signing_key: Ed25519PrivateKey) -> None:
        self.hub_id = hub_id
        self._key = signing_key
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._upgrade()
        with self._lock:
            self.epoch = int(self._meta("epoch", "0")) + 1
            self._set_meta("epoch", str(self.epoch))
        self._seq = 0
        self._last_hash = self._meta("last_hash", GENESIS_HASH)
        # Kept in memory too: read on every unlock, written only by `_forget`.
        self._forgotten = int(self._meta(_FORGOTTEN_THROUGH, "0"))
        self._prepare()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- events ----------------------------------------------------------------------

    def append(self, kind: str, data: dict[str, Any], ts: float) -> Event:
        """Sign, chain and durably store one event; return it, ready to publish."""
        event, _ = self._append(kind, data, ts, None)
        return event

    def append_answering(
        self, kind: str, data: dict[str, Any], ts: float, reply: Reply
    ) -> tuple[Event, Reply, bytes]:
        """`append`, and in the same transaction record `reply`, naming the new event in
        its `seqs`, as the answer to its command (`command_reply`): one write to storage
        (one fsync on a real hub) before either is published, not two. Returns the event,
        the reply and the reply's bytes, ready to publish."""
        event, answer = self._append(kind, data, ts, reply)
        assert answer is not None
        return event, answer[0], answer[1]

    def _append(
        self, kind: str, data: dict[str, Any], ts: float, reply: Reply | None
    ) -> tuple[Event, tuple[Reply, bytes] | None]:
        with self._lock:
            unsigned = Event(
                hub=self.hub_id,
                epoch=self.epoch,
                seq=self._seq + 1,
                event_id=str(uuid.uuid4()),
                ts=ts,
                kind=kind,
                data=data,
                prev_hash=self._last_hash,
            )
            event = unsigned.model_copy(
                update={"sig": b64encode(self._key.sign(unsigned.signing_bytes()))}
            )
            chain_hash = event.chain_hash()
            answer = None
            if reply is not None:
                named = reply.model_copy(update={"seqs": [event.seq]})
                answer = (named, named.model_dump_json().encode())
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    _INSERT_EVENT, (event.epoch, event.seq, event.model_dump_json().encode())
                )
                self._set_meta("last_hash", chain_hash)
                if answer is not None:
                    self._db.execute(_RECORD_COMMAND, (answer[0].command_id, answer[1], ts))
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise _storage_failed(exc) from exc
            except BaseException:
                self._rollback()
                raise
            self._seq, self._last_hash = event.seq, chain_hash
            return event, answer

    def unacknowledged(self, *, limit: int = 500, after: tuple[int, int] = (0, 0)) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM events WHERE (epoch, seq) > (?, ?) ORDER BY epoch, seq LIMIT ?",
                (after[0], after[1], limit),
            ).fetchall()
        return [Event.model_validate_json(row[0]) for row in rows]

    def acknowledge(self, epoch: int, through_seq: int) -> int:
        """Forget events of `epoch` up to `through_seq`; returns how many were dropped."""
        with self._lock:
            return self._write(_ACKNOWLEDGE, (epoch, through_seq)).rowcount

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    # --- single-use tokens and idempotent commands -----------------------------------

    def token_used(self, token_id: bytes) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM used_tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
            return row is not None

    def use_token(
        self,
        token_id: bytes,
        *,
        expires: int,
        now: float,
        visit: tuple[str, str, str] | None = None,
    ) -> bool:
        """Record a grant's token id as used; False if it was used before (a replay),
        or if it may have been and is forgotten: the grant expires by `forgotten_through`.

        With `visit` (access point, entry id, command id), the entry it opens is journalled
        as a new visit in the same transaction: one write to storage (one fsync on a real
        hub) before the bolt moves, not two; a replay records neither."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                if expires <= self._forgotten:
                    self._rollback()
                    return False
                self._db.execute(_INSERT_USED, (token_id, expires, now))
                if visit is not None:
                    self._db.execute(_SAVE_VISIT, (*visit, 0, 0, None))
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._rollback()
                return False
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise _storage_failed(exc) from exc
            except BaseException:
                self._rollback()
                raise
            return True

    def forget_tokens_expired_before(self, cutoff: int) -> None:
        # An expired grant is refused on its `exp` alone, so its id no longer needs keeping.
        self._forget(
            "SELECT max(expires) FROM used_tokens WHERE expires < ?",
            "DELETE FROM used_tokens WHERE expires < ?",
            cutoff,
        )

    def forgotten_through(self) -> int:
        """The latest expiry (epoch seconds) of a grant whose token id or entry this
        journal may have forgotten: a grant that expires by then is never accepted,
        whatever the clock says now (it may have run ahead when it forgot)."""
        return self._forgotten

    # --- entries a lock command ended -------------------------------------------------

    def end_entry(self, entry_id: str, *, until: int) -> None:
        """Remember that a lock command ended `entry_id`, until `until` (epoch seconds,
        later than any grant for the entry expires): an unlock naming it that comes
        later is refused (`entry_ended`)."""
        with self._lock:
            self._write(
                "INSERT INTO ended_entries (entry_id, until) VALUES (?, ?)"
                " ON CONFLICT(entry_id) DO UPDATE SET until = max(until, excluded.until)",
                (entry_id, until),
            )

    def entry_ended(self, entry_id: str, *, now: float) -> bool:
        with self._lock:
            return self._db.execute(_ENTRY_ENDED, (entry_id, int(now))).fetchone() is not None

    def forget_ended_entries_before(self, cutoff: int) -> None:
        # Every grant for an ended entry expires before its `until` (`end_entry`'s caller
        # sees to it), so `until` bounds the grants forgetting the entry lets through.
        self._forget(
            "SELECT max(until) FROM ended_entries WHERE until < ?",
            "DELETE FROM ended_entries WHERE until < ?",
            cutoff,
        )

    def _forget(self, latest: str, delete: str, cutoff: int) -> None:
        """Run `delete` and move `forgotten_through` up to the latest expiry it deletes
        (`latest`), in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                (expiry,) = self._db.execute(latest, (cutoff,)).fetchone()
                if expiry is not None:
                    self._db.execute(delete, (cutoff,))
                    forgotten = max(self._forgotten, int(expiry))
                    self._set_meta(_FORGOTTEN_THROUGH, str(forgotten))
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise _storage_failed(exc) from exc
            except BaseException:
                self._rollback()
                raise
            if expiry is not None:
                self._forgotten = forgotten

    def command_reply(self, command_id: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(_COMMAND_REPLY, (command_id,)).fetchone()
        return bytes(row[0]) if row else None

    def record_command(self, command_id: str, reply: bytes, now: float) -> None:
        with self._lock:
            self._write(_RECORD_COMMAND, (command_id, reply, now))

    # --- the highest event number each lock has sent ----------------------------------

    def lock_event_mark(self, lock: str) -> int | None:
        """The highest event number recorded for `lock` (the driver's own name for the
        lock and what its numbers count from), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT event_number FROM lock_event_marks WHERE lock = ?", (lock,)
            ).fetchone()
        return int(row[0]) if row else None

    def raise_lock_event_mark(self, lock: str, event_number: int) -> None:
        """Record `event_number` for `lock`, unless a higher one is recorded: a mark
        never goes down. One write to storage (an fsync on a real hub)."""
        with self._lock:
            self._write(
                "INSERT INTO lock_event_marks (lock, event_number) VALUES (?, ?)"
                " ON CONFLICT(lock) DO UPDATE"
                " SET event_number = max(event_number, excluded.event_number)",
                (lock, event_number),
            )

    # --- entries in progress (so a restart mid-entry still relocks) ---------------------

    def save_visit(
        self,
        access_point: str,
        entry_id: str,
        command_id: str,
        replied: bool,
        opened: bool,
        opened_at: float | None = None,
    ) -> None:
        """Journal the entry in progress at `access_point`; `opened_at` is when its door
        last opened (the hub's clock), None while it is not known to be open."""
        with self._lock:
            self._write(
                _SAVE_VISIT,
                (access_point, entry_id, command_id, int(replied), int(opened), opened_at),
            )

    def drop_visit(self, access_point: str) -> None:
        with self._lock:
            self._write("DELETE FROM visits WHERE access_point = ?", (access_point,))

    def visits(self) -> list[tuple[str, str, str, bool, bool, float | None]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT access_point, entry_id, command_id, replied, opened, opened_at FROM visits"
            ).fetchall()
        return [
            (str(a), str(e), str(c), bool(r), bool(o), None if t is None else float(t))
            for a, e, c, r, o, t in rows
        ]

    # --- meta --------------------------------------------------------------------------

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(_SET_META, (key, value))

    def _upgrade(self) -> None:
        # A journal written before visits kept when the door opened: nobody knows when.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(visits)")}
        if "opened_at" not in columns:
            self._db.execute("ALTER TABLE visits ADD COLUMN opened_at REAL")

    def _write(self, sql: str, parameters: tuple[Any, ...]) -> sqlite3.Cursor:
        """One statement, its own transaction; `JournalError` when storage refuses it."""
        self._rollback()  # one a failed rollback left open would swallow this write
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _storage_failed(exc) from exc

    def _rollback(self) -> None:
        # After a failed write (a full disk) the transaction may be open or already gone
        # (SQLite rolls back the whole of it after some errors); either way the next one
        # must be able to begin. A rollback the failing disk refuses too leaves the
        # transaction open: the next write's BEGIN fails, and its rollback tries again.
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                log.error("the journal could not roll back a failed write: %s", exc)

    def _prepare(self) -> None:
        """Compile the statements a command uses, once, in a transaction that is rolled
        back (nothing is written). sqlite3 keeps them compiled per connection; compiled
        at their first use instead, they cost the first command after a start about as
        much again as running them."""
        rehearsal = (
            (_COMMAND_REPLY, ("",)),
            (_INSERT_USED, (b"", 0, 0.0)),
            (_INSERT_EVENT, (0, 0, b"")),
            (_SET_META, ("", "")),
            (_RECORD_COMMAND, ("", b"", 0.0)),
            (_SAVE_VISIT, ("", "", "", 0, 0, None)),
            (_ACKNOWLEDGE, (0, 0)),
            (_ENTRY_ENDED, ("", 0)),
        )
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for sql, parameters in rehearsal:
                    self._db.execute(sql, parameters)
            except sqlite3.IntegrityError:
                pass  # a row with one of these keys exists: the rest compile at first use
            finally:
                self._db.execute("ROLLBACK")
