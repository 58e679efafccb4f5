"""Ingest: store hub events idempotently, advance streams, apply replies and status.

These functions run inside one ingest batch's transaction; the caller commits and only
then publishes acknowledgements, so nothing is acknowledged before it is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.access import service as access
from doorstep.audit import service as audit
from doorstep.homes.models import Hub
from doorstep.hublink.models import HubEvent, HubStream
from doorstep.protocol.messages import Event, Reply, Status, b64decode


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    stored: bool
    through_seq: int
    gap_from: int | None  # first missing seq when a gap was seen


class RejectedEvent(Exception):
    pass


def verify_event_signature(hub: Hub, event: Event) -> None:
    if hub.public_key is None:
        raise RejectedEvent("hub has no enrolled public key")
    try:
        Ed25519PublicKey.from_public_bytes(hub.public_key).verify(
            b64decode(event.sig), event.signing_bytes()
        )
    except (InvalidSignature, ValueError) as exc:
        raise RejectedEvent("event signature does not verify") from exc


def ingest_event(session: Session, *, hub: Hub, event: Event, now: datetime) -> IngestOutcome:
    """Store `event` once; apply its effects the first time only."""
    stream = session.get(HubStream, (hub.id, event.epoch))
    if stream is None:
        stream = HubStream(hub_id=hub.id, epoch=event.epoch, through_seq=0, max_seq=0)
        session.add(stream)
    stored = False
    if session.get(HubEvent, (hub.id, event.epoch, event.seq)) is None:
        verify_event_signature(hub, event)
        session.add(_row(hub.id, event, now))
        session.flush()
        access.apply_hub_event(session, hub_id=hub.id, event=event, now=now)
        stored = True
    stream.max_seq = max(stream.max_seq, event.seq)
    _advance(session, stream)
    gap = stream.through_seq + 1 if stream.max_seq > stream.through_seq else None
    return IngestOutcome(stored, stream.through_seq, gap)


def _row(hub_id: str, event: Event, now: datetime) -> HubEvent:
    entry_id = event.data.get("entry_id")
    return HubEvent(
        hub_id=hub_id,
        epoch=event.epoch,
        seq=event.seq,
        event_id=event.event_id,
        kind=event.kind,
        ts=event.ts,
        data=event.data,
        prev_hash=event.prev_hash,
        sig=event.sig,
        entry_id=entry_id if isinstance(entry_id, str) else None,
        received_at=now,
    )


def _advance(session: Session, stream: HubStream) -> None:
    if stream.max_seq == stream.through_seq:
        return
    seqs = session.scalars(
        select(HubEvent.seq)
        .where(
            HubEvent.hub_id == stream.hub_id,
            HubEvent.epoch == stream.epoch,
            HubEvent.seq > stream.through_seq,
        )
        .order_by(HubEvent.seq)
    ).all()
    for seq in seqs:
        if seq != stream.through_seq + 1:
            break
        stream.through_seq = seq


def ingest_reply(session: Session, *, hub_id: str, reply: Reply, now: datetime) -> str | None:
    """Apply a command result to its entry; returns the entry id if there was one."""
    return access.apply_reply(session, hub_id=hub_id, reply=reply, now=now)


def ingest_status(session: Session, *, hub: Hub, status: Status, now: datetime) -> None:
    online = status.state == "online"
    if status.epoch is not None and hub.epoch is not None and status.epoch < hub.epoch:
        return  # a late last will from an earlier boot says nothing about this one
    if hub.online == online and hub.epoch == (status.epoch or hub.epoch):
        return
    hub.online = online
    hub.epoch = status.epoch or hub.epoch
    hub.status_at = now
    audit.append(
        session,
        at=now,
        actor=f"hub:{hub.id}",
        action=f"hub:status:{status.state}",
        subject=hub.id,
        home_id=hub.home_id,
        data={"epoch": status.epoch},
    )
