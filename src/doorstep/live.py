"""The resident's live event stream: every audit record of a home, as it is committed.

`GET /v1/homes/{home_id}/events` is a Server-Sent Events stream. Each event is one audit
record of the home (entries moving, alerts, the hub going on- or offline, preferences
changed): `id:` is the record's chain sequence number, `event:` its action, `data:` the
record as JSON. A client that reconnects with `Last-Event-ID` first gets what it missed,
read back from the audit log, so nothing is lost to a dropped connection. A comment line
every 15 s keeps proxies from closing an idle stream.

Records reach subscribers in this process after their transaction commits (`Tx.on_commit`);
those the hot paths' writer process commits are handed back to this process after its
commit (`doorstep.hotwriter`). With several service processes, each stream sees the
records its own process wrote, and the replay on reconnect fills the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from doorstep import db
from doorstep.audit.models import AuditEvent
from doorstep.deps import ResidentBrief, RuntimeDep
from doorstep.homes.service import owned_home
from doorstep.livebus import BUS, record_of

KEEPALIVE_SECONDS = 15.0
REPLAY_LIMIT = 1000

router = APIRouter(prefix="/v1", tags=["homes"])


@router.get("/homes/{home_id}/events")
async def events(
    home_id: str, request: Request, runtime: RuntimeDep, resident: ResidentBrief
) -> StreamingResponse:
    """The home's audit records as Server-Sent Events, live (see the module docstring)."""
    with runtime.sessions() as session:
        db.read_only(session)
        owned_home(session, owner=resident, home_id=home_id)
    last = request.headers.get("last-event-id", "")
    after = int(last) if last.isdigit() else None
    queue = BUS.subscribe(home_id)  # before the replay: nothing falls between the two
    missed = _replay(runtime, home_id, after) if after is not None else []
    return StreamingResponse(
        _stream(home_id, queue, missed),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def _replay(runtime: Any, home_id: str, after: int) -> list[dict[str, Any]]:
    with runtime.sessions() as session:
        db.read_only(session)
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.home_id == home_id, AuditEvent.seq > after)
            .order_by(AuditEvent.seq)
            .limit(REPLAY_LIMIT)
        ).all()
        return [
            record_of(row.seq, row.ts, row.actor, row.action, row.subject, row.data) for row in rows
        ]


async def _stream(
    home_id: str, queue: asyncio.Queue[dict[str, Any] | None], missed: list[dict[str, Any]]
) -> AsyncIterator[bytes]:
    sent = 0
    try:
        yield b"retry: 2000\n\n"
        for record in missed:
            sent = record["seq"]
            yield _frame(record)
        while True:
            try:
                latest = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if latest is None:  # fell too far behind: end; the client replays on reconnect
                return
            if latest["seq"] > sent:
                sent = latest["seq"]
                yield _frame(latest)
    finally:
        BUS.unsubscribe(home_id, queue)


def _frame(record: dict[str, Any]) -> bytes:
    body = orjson.dumps(record).decode()
    return f"id: {record['seq']}\nevent: {record['action']}\ndata: {body}\n\n".encode()
