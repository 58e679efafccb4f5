"""The resident's live event stream: every audit record of a home, as it is committed.

`GET /v1/homes/{home_id}/events` is a Server-Sent Events stream. Each event is one audit
record of the home (entries moving, alerts, the hub going on- or offline, preferences
changed): `id:` is the record's chain sequence number, `event:` its action, `data:` the
record as JSON. A client that reconnects with `Last-Event-ID` first gets what it missed,
read back from the audit log, so nothing is lost to a dropped connection. A comment line
every 15 s keeps proxies from closing an idle stream. At least that often the bearer
token is checked again (still valid, its resident still owns the home): a token ended
meanwhile (signed out everywhere, a password changed) ends the stream, and the
reconnect gets 401.

The stream reads the records from the audit log, whichever service process committed
them: after each read it waits for a record of the home committed in this process
(`doorstep.livebus`, so those arrive at once) or `POLL_SECONDS`, whichever comes first,
and reads what was committed since. Appends take the chain's head row until they commit
(`doorstep.audit.service`), so records commit in sequence order: once the newest
sequence number is read, every record up to it is there to read, and the next read
starts after it. Nothing is skipped and nothing sent twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from doorstep import db
from doorstep.accounts.service import resolve_token
from doorstep.audit.models import AuditEvent
from doorstep.deps import ResidentBrief, RuntimeDep
from doorstep.errors import DoorstepError
from doorstep.homes.service import owned_home
from doorstep.livebus import BUS, record_of

KEEPALIVE_SECONDS = 15.0
# How long a stream waits for this process's bus before it reads the audit log anyway,
# for the records other service processes committed: one indexed read a second.
POLL_SECONDS = 1.0
READ_LIMIT = 1000  # records per read; a reader further behind reads again at once

router = APIRouter(prefix="/v1", tags=["homes"])

Reader = Callable[[int], tuple[int, list[dict[str, Any]]]]


@router.get("/homes/{home_id}/events")
async def events(
    home_id: str, request: Request, runtime: RuntimeDep, resident: ResidentBrief
) -> StreamingResponse:
    """The home's audit records as Server-Sent Events, live (see the module docstring)."""
    with runtime.sessions() as session:
        db.read_only(session)
        owned_home(session, owner=resident, home_id=home_id)
        newest = _newest_seq(session)
    last = request.headers.get("last-event-id", "")
    after = int(last) if last.isdigit() else newest
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return StreamingResponse(
        _stream(
            home_id,
            after,
            lambda read_after: _read(runtime, home_id, read_after),
            lambda: _still_allowed(runtime, token, home_id),
        ),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def _newest_seq(session: Session) -> int:
    return session.scalar(select(func.max(AuditEvent.seq))) or 0


def _read(runtime: Any, home_id: str, after: int) -> tuple[int, list[dict[str, Any]]]:
    """The home's records committed after seq `after`, oldest first, and the seq the next
    read starts after."""
    with runtime.sessions() as session:
        db.read_only(session)
        # Read first: every record up to it has committed (see the module docstring), so
        # the read below, bounded by it, misses none, even in a snapshot of its own.
        newest = _newest_seq(session)
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.home_id == home_id, AuditEvent.seq > after, AuditEvent.seq <= newest)
            .order_by(AuditEvent.seq)
            .limit(READ_LIMIT)
        ).all()
        records = [
            record_of(row.seq, row.ts, row.actor, row.action, row.subject, row.data) for row in rows
        ]
    if len(records) == READ_LIMIT:  # more to read: the next read goes on from the last one
        newest = records[-1]["seq"]
    return newest, records


def _still_allowed(runtime: Any, token: str, home_id: str) -> bool:
    """Whether the stream's token still signs its resident in, and they still own the
    home."""
    try:
        with runtime.sessions() as session:
            db.read_only(session)
            resident = resolve_token(session, token=token, now=runtime.clock.now())
            owned_home(session, owner=resident, home_id=home_id)
    except DoorstepError:
        return False
    return True


async def _stream(
    home_id: str, after: int, read: Reader, allowed: Callable[[], bool]
) -> AsyncIterator[bytes]:
    queue = BUS.subscribe(home_id)  # before the first read: no wake-up falls between
    checked = time.monotonic()
    try:
        yield b"retry: 2000\n\n"
        while True:
            if time.monotonic() - checked >= KEEPALIVE_SECONDS:
                if not await run_in_threadpool(allowed):
                    return  # the token ended (or the home is no longer theirs)
                checked = time.monotonic()
                yield b": keepalive\n\n"
            after, records = await run_in_threadpool(read, after)
            for record in records:
                yield _frame(record)
            if len(records) < READ_LIMIT:
                await _woken(queue, POLL_SECONDS)
    finally:
        BUS.unsubscribe(home_id, queue)


async def _woken(queue: asyncio.Queue[dict[str, Any] | None], timeout: float) -> None:
    """Wait until this process commits a record of the home, or `timeout` s. What the bus
    carries is only a wake-up: the records themselves are read from the audit log."""
    try:
        await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return
    while not queue.empty():  # each one committed before the read that follows
        queue.get_nowait()


def _frame(record: dict[str, Any]) -> bytes:
    body = orjson.dumps(record).decode()
    return f"id: {record['seq']}\nevent: {record['action']}\ndata: {body}\n\n".encode()
