"""Append to and verify the audit chain.

Each record's hash is SHA-256 over the previous hash and the canonical JSON of the record
(seq, ts, actor, action, subject, home, data). The head row is updated first in the
transaction, which takes its lock (a row lock on PostgreSQL, the write lock on SQLite), so
two writers can never both extend the same link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from doorstep.audit.models import AuditEvent, AuditHead
from doorstep.protocol.messages import GENESIS_HASH, canonical


def record_hash(prev_hash: str, event: AuditEvent) -> str:
    body = canonical(
        {
            "seq": event.seq,
            "ts": event.ts.astimezone(UTC).isoformat(),
            "actor": event.actor,
            "action": event.action,
            "subject": event.subject,
            "home_id": event.home_id,
            "data": event.data,
        }
    )
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def append(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    home_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one record to the chain, inside the caller's transaction."""
    seq, prev_hash = _advance_head(session)
    event = AuditEvent(
        seq=seq,
        ts=at,
        actor=actor,
        action=action,
        subject=subject,
        home_id=home_id,
        data=data or {},
        prev_hash=prev_hash,
        hash="",
    )
    event.hash = record_hash(prev_hash, event)
    session.add(event)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=event.hash))
    return event


def _advance_head(session: Session) -> tuple[int, str]:
    row = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
    ).one_or_none()
    if row is None:
        raise RuntimeError("audit head row missing: run the migrations")
    return int(row.seq), str(row.hash)


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
        if record_hash(prev_hash, event) != event.hash:
            return ChainReport(count, False, event.seq, "content does not match its hash")
        prev_hash, expected_seq = event.hash, expected_seq + 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        return ChainReport(count, False, expected_seq, "records missing at the end")
    return ChainReport(count, True)


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
