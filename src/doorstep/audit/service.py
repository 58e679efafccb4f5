"""Append to and verify the audit chain.

Each record's hash is SHA-256 over the previous hash and the canonical JSON of the record
(seq, ts, actor, action, subject, home, data). The head row is updated first in the
transaction, which takes its lock (a row lock on PostgreSQL, the write lock on SQLite), so
two writers can never both extend the same link. Appends are plain SQL (`append_tx`) so
the hot paths can afford them; `append` runs the same inside an ORM session.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep import livebus
from doorstep.audit.models import AuditEvent, AuditHead
from doorstep.protocol.messages import GENESIS_HASH, canonical
from doorstep.sql import Tx

_INSERT = (
    "INSERT INTO audit_events (seq, ts, actor, action, subject, home_id, data, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?j, ?, ?)"
)


def record_hash(
    prev_hash: str,
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    subject: str,
    home_id: str | None,
    data: dict[str, Any],
) -> str:
    body = canonical(
        {
            "seq": seq,
            "ts": ts.astimezone(UTC).isoformat(),
            "actor": actor,
            "action": action,
            "subject": subject,
            "home_id": home_id,
            "data": data,
        }
    )
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def append_tx(
    tx: Tx,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    home_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Add one record to the chain inside `tx`'s transaction; returns its seq."""
    head = tx.one("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
    if head is None:
        raise RuntimeError("audit head row missing: run the migrations")
    seq, prev_hash = int(head[0]), str(head[1])
    # Stored and hashed at the database's precision (microseconds), so verify agrees.
    at = at.astimezone(UTC)
    payload = data or {}
    digest = record_hash(
        prev_hash,
        seq=seq,
        ts=at,
        actor=actor,
        action=action,
        subject=subject,
        home_id=home_id,
        data=payload,
    )
    tx.run(
        _INSERT,
        (seq, tx.time(at), actor, action, subject, home_id, tx.json(payload), prev_hash, digest),
    )
    tx.run("UPDATE audit_head SET hash = ? WHERE id = 1", (digest,))
    if home_id is not None:  # the home's live stream (`doorstep.live`), once committed
        record = livebus.record_of(seq, at, actor, action, subject, payload)
        tx.on_commit(lambda: livebus.BUS.publish(home_id, record))
    return seq


def append(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    home_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """`append_tx` inside the session's transaction."""
    return append_tx(
        Tx.of_session(session),
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        home_id=home_id,
        data=data,
    )


@dataclass(frozen=True)
class ChainReport:
    records: int
    ok: bool
    broken_seq: int | None = None
    problem: str = ""


def verify(session: Session, *, batch: int = 5000) -> ChainReport:
    """Recompute the whole chain; report the first record that does not follow."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    for event in _iter_events(session, batch):
        count += 1
        if event.seq != expected_seq:
            return ChainReport(count, False, expected_seq, "record missing")
        if event.prev_hash != prev_hash:
            return ChainReport(count, False, event.seq, "prev_hash does not match")
        if _hash_of(prev_hash, event) != event.hash:
            return ChainReport(count, False, event.seq, "content does not match its hash")
        prev_hash, expected_seq = event.hash, expected_seq + 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        return ChainReport(count, False, expected_seq, "records missing at the end")
    return ChainReport(count, True)


def _hash_of(prev_hash: str, event: AuditEvent) -> str:
    return record_hash(
        prev_hash,
        seq=event.seq,
        ts=event.ts,
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        home_id=event.home_id,
        data=event.data,
    )


def _iter_events(session: Session, batch: int) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = (
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()
