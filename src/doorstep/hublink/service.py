"""Ingest: store hub events idempotently, advance streams, apply replies and status.
An event whose effects fail is stored and acknowledged all the same, and its effects are
applied again later (`retry_failed_effects`, from the link's sweep).

These functions run as jobs on the writer thread (`doorstep.sql.Writer`); acknowledgements
are published only after the batch that stored the events has committed, so nothing is
acknowledged before it is durable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from doorstep.access import remote
from doorstep.access import service as access
from doorstep.audit.service import append_tx
from doorstep.protocol.messages import Event, Reply, Status, b64decode
from doorstep.sql import Tx

log = logging.getLogger(__name__)

_INSERT_EVENT = (
    "INSERT INTO hub_events (hub_id, epoch, seq, event_id, kind, ts, data, prev_hash, sig,"
    " entry_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?j, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_STREAM = "SELECT through_seq, max_seq FROM hub_streams WHERE hub_id = ? AND epoch = ?"
_INSERT_STREAM = (
    "INSERT INTO hub_streams (hub_id, epoch, through_seq, max_seq) VALUES (?, ?, 0, 0)"
    " ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class HubInfo:
    id: str
    home_id: str
    public_key: Ed25519PublicKey | None


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    stored: bool
    through_seq: int
    gap_from: int | None  # first missing seq when a gap was seen


class RejectedEvent(Exception):
    pass


def hub_info(tx: Tx, hub_id: str) -> HubInfo | None:
    row = tx.one("SELECT id, home_id, public_key FROM hubs WHERE id = ?", (hub_id,))
    if row is None:
        return None
    key = Ed25519PublicKey.from_public_bytes(bytes(row[2])) if row[2] is not None else None
    return HubInfo(row[0], row[1], key)


def verify_event_signature(hub: HubInfo, event: Event) -> None:
    if hub.public_key is None:
        raise RejectedEvent("hub has no enrolled public key")
    try:
        hub.public_key.verify(b64decode(event.sig), event.signing_bytes())
    except (InvalidSignature, ValueError) as exc:
        raise RejectedEvent("event signature does not verify") from exc


def ingest_event(tx: Tx, *, hub: HubInfo, event: Event, now: datetime) -> IngestOutcome:
    """Store `event` once; apply its effects the first time only (`_apply`).

    Every `serve` process receives every hub message, so two may store the same event at
    once. The stream's row is locked first (PostgreSQL; a SQLite writer holds the whole
    database), so the second waits for the first to commit, then finds the event stored
    and only acknowledges it."""
    through, max_seq = _locked_stream(tx, hub.id, event.epoch)
    stored = False
    if event.seq > through and not _have(tx, hub.id, event):
        verify_event_signature(hub, event)
        entry_id = event.data.get("entry_id")
        stored = bool(
            tx.run(
                _INSERT_EVENT,
                (
                    hub.id,
                    event.epoch,
                    event.seq,
                    event.event_id,
                    event.kind,
                    event.ts,
                    tx.json(event.data),
                    event.prev_hash,
                    event.sig,
                    entry_id if isinstance(entry_id, str) else None,
                    tx.time(now),
                ),
            )
        )
        if stored:
            _apply(tx, hub, event, now)
    max_seq = max(max_seq, event.seq)
    through = _advance(tx, hub.id, event.epoch, through, max_seq)
    tx.run(
        "UPDATE hub_streams SET through_seq = ?, max_seq = ? WHERE hub_id = ? AND epoch = ?",
        (through, max_seq, hub.id, event.epoch),
    )
    return IngestOutcome(stored, through, through + 1 if max_seq > through else None)


def _locked_stream(tx: Tx, hub_id: str, epoch: int) -> tuple[int, int]:
    """The stream's `through_seq` and `max_seq`, its row made if new, and locked."""
    select = _lock(tx, _STREAM)
    stream = tx.one(select, (hub_id, epoch))
    if stream is None and tx.run(_INSERT_STREAM, (hub_id, epoch)):
        return 0, 0
    if stream is None:  # another writer made it meanwhile: wait for its commit
        stream = tx.one(select, (hub_id, epoch))
    return (int(stream[0]), int(stream[1])) if stream is not None else (0, 0)


def _lock(tx: Tx, select: str) -> str:
    """`select`, locking the rows it reads until the transaction ends (PostgreSQL; SQLite
    has no row locks, and its writer holds the database's write lock)."""
    return select + " FOR UPDATE" if tx.postgres else select


def _apply(tx: Tx, hub: HubInfo, event: Event, now: datetime) -> None:
    """The event's effects, in a savepoint of their own: one that fails (a conflict the
    effects did not foresee, a deadlock the database broke) is logged and undone, but
    never keeps the event itself from being stored and acknowledged. Otherwise every
    replay would fail the same way and the hub's later events could never be
    acknowledged past the gap. The failure is kept (`hub_event_failures`) and the
    effects applied again later (`retry_failed_effects`)."""
    try:
        _effects(tx, hub.id, event, now)
    except Exception as error:  # the event is stored either way; the log says what failed
        log.exception("applying event %s/%s of %s failed", event.epoch, event.seq, hub.id)
        tx.run(
            "INSERT INTO hub_event_failures (hub_id, epoch, seq, attempts, next_at, error)"
            " VALUES (?, ?, ?, 1, ?, ?)",
            (hub.id, event.epoch, event.seq, tx.time(now + _retry_delay(1)), _describe(error)),
        )


def _effects(tx: Tx, hub_id: str, event: Event, now: datetime) -> None:
    """Apply the event's effects in a savepoint, undone whole (with the live-stream
    records of its audit rows) if they fail."""
    tx.savepoint("hub_event")
    try:
        access.apply_hub_event(tx, hub_id=hub_id, event=event, now=now)
        remote.record_lock_outcome(tx, hub_id=hub_id, event=event, now=now)
    except Exception:
        tx.rollback_to("hub_event")
        raise
    tx.release("hub_event")


RETRY_ATTEMPTS = 8  # then given up: the row stays, `next_at` NULL, for the operator
RETRY_BATCH = 50


def _retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(2.0**attempts, 600.0))  # 2 s, 4 s, ... at most 10 min


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:300]


def retry_failed_effects(tx: Tx, *, now: datetime) -> int:
    """Apply again the effects of stored events that failed and are due (a writer job of
    the link's sweep). Oldest first per hub, as they happened; the state changes they
    make are conditional on the entry's state, so an effect that comes late moves
    nothing back. Each at most `RETRY_ATTEMPTS` times, backing off. Returns how many
    now held."""
    due = tx.all(
        "SELECT f.hub_id, f.epoch, f.seq, f.attempts, e.event_id, e.kind, e.ts, e.data,"
        " e.prev_hash, e.sig, e.received_at FROM hub_event_failures f JOIN hub_events e"
        " ON e.hub_id = f.hub_id AND e.epoch = f.epoch AND e.seq = f.seq"
        " WHERE f.next_at IS NOT NULL AND f.next_at <= ?"
        " ORDER BY f.hub_id, f.epoch, f.seq LIMIT ?",
        (tx.time(now), RETRY_BATCH),
    )
    held = 0
    for hub_id, epoch, seq, attempts, event_id, kind, ts, data, prev_hash, sig, received in due:
        event = Event(
            hub=hub_id, epoch=epoch, seq=seq, event_id=event_id, ts=ts, kind=kind,
            data=orjson.loads(data) if isinstance(data, (str, bytes)) else data,
            prev_hash=prev_hash, sig=sig,
        )  # fmt: skip
        key = (hub_id, epoch, seq)
        try:
            # As of its arrival: the entry's times are the event's, not the retry's.
            _effects(tx, hub_id, event, tx.parse_time(received) or now)
        except Exception as error:
            attempts += 1
            if attempts >= RETRY_ATTEMPTS:
                log.error("gave up applying event %s/%s of %s after %d attempts: %s",
                          epoch, seq, hub_id, attempts, _describe(error))  # fmt: skip
                next_at = None
            else:
                log.warning("applying event %s/%s of %s failed again (attempt %d): %s",
                            epoch, seq, hub_id, attempts, _describe(error))  # fmt: skip
                next_at = tx.time(now + _retry_delay(attempts))
            tx.run(
                "UPDATE hub_event_failures SET attempts = ?, next_at = ?, error = ?"
                " WHERE hub_id = ? AND epoch = ? AND seq = ?",
                (attempts, next_at, _describe(error), *key),
            )
            continue
        tx.run("DELETE FROM hub_event_failures WHERE hub_id = ? AND epoch = ? AND seq = ?", key)
        log.info("applied event %s/%s of %s on attempt %d", epoch, seq, hub_id, attempts + 1)
        held += 1
    return held


def _have(tx: Tx, hub_id: str, event: Event) -> bool:
    return (
        tx.one(
            "SELECT 1 FROM hub_events WHERE hub_id = ? AND epoch = ? AND seq = ?",
            (hub_id, event.epoch, event.seq),
        )
        is not None
    )


def _advance(tx: Tx, hub_id: str, epoch: int, through: int, max_seq: int) -> int:
    """The highest seq up to which this stream has no gap."""
    if max_seq == through:
        return through
    seqs = tx.all(
        "SELECT seq FROM hub_events WHERE hub_id = ? AND epoch = ? AND seq > ? ORDER BY seq",
        (hub_id, epoch, through),
    )
    for (seq,) in seqs:
        if seq != through + 1:
            break
        through = seq
    return through


def ingest_reply(tx: Tx, *, hub_id: str, reply: Reply, now: datetime) -> str | None:
    """Apply a command result to its entry; returns the entry id if there was one."""
    return access.apply_reply(tx, hub_id=hub_id, reply=reply, now=now)


def ingest_status(tx: Tx, *, hub: HubInfo, status: Status, now: datetime) -> None:
    """Record the hub's state, and audit it if it changed. The UPDATE's own condition
    decides, not an earlier read: of two `serve` processes storing the same status, the
    second finds nothing left to change, and audits nothing."""
    online = status.state == "online"
    if status.epoch is None:
        changed = tx.run(
            "UPDATE hubs SET online = ?, status_at = ? WHERE id = ? AND online <> ?",
            (online, tx.time(now), hub.id, online),
        )
    else:
        # A late last will from an earlier boot says nothing about this one.
        changed = tx.run(
            "UPDATE hubs SET online = ?, epoch = ?, status_at = ? WHERE id = ?"
            " AND (epoch IS NULL OR epoch <= ?)"
            " AND (online <> ? OR epoch IS NULL OR epoch <> ?)",
            (online, status.epoch, tx.time(now), hub.id, status.epoch, online, status.epoch),
        )
    if not changed:
        return
    append_tx(
        tx,
        at=now,
        actor=f"hub:{hub.id}",
        action=f"hub:status:{status.state}",
        subject=hub.id,
        home_id=hub.home_id,
        data={"epoch": status.epoch},
    )
