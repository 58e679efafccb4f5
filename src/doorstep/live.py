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

Records reach subscribers in this process after their transaction commits (`Tx.on_commit`);
those the hot paths' writer process commits are handed back to this process after its
commit (`doorstep.hotwriter`). With several service processes, each stream sees the
records its own process wrote, and the replay on reconnect fills the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from doorstep import db
from doorstep.accounts.service import resolve_token
from doorstep.audit.models import AuditEvent
from doorstep.deps import ResidentBrief, RuntimeDep
from doorstep.errors import DoorstepError
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
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    queue = BUS.subscribe(home_id)  # before the replay: nothing falls between the two
    missed = _replay(runtime, home_id, after) if after is not None else []
    return StreamingResponse(
        _stream(home_id, queue, missed, lambda: _still_allowed(runtime, token, home_id)),
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
    home_id: str,
    queue: asyncio.Queue[dict[str, Any] | None],
    missed: list[dict[str, Any]],
    allowed: Callable[[], bool],
) -> AsyncIterator[bytes]:
    sent = 0
    checked = time.monotonic()
    try:
        yield b"retry: 2000\n\n"
        for record in missed:
            sent = record["seq"]
            yield _frame(record)
        while True:
            wait = max(0.0, checked + KEEPALIVE_SECONDS - time.monotonic())
            try:
                latest = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                latest = _KEEPALIVE
            if time.monotonic() - checked >= KEEPALIVE_SECONDS:
                if not allowed():
                    return  # the token ended (or the home is no longer theirs)
                checked = time.monotonic()
            if latest is _KEEPALIVE:
                yield b": keepalive\n\n"
                continue
            if latest is None:  # fell too far behind: end; the client replays on reconnect
                return
            if latest["seq"] > sent:
                sent = latest["seq"]
                yield _frame(latest)
    finally:
        BUS.unsubscribe(home_id, queue)


_KEEPALIVE: dict[str, Any] = {}  # a tick with nothing to send


def _frame(record: dict[str, Any]) -> bytes:
    body = orjson.dumps(record).decode()
    return f"id: {record['seq']}\nevent: {record['action']}\ndata: {body}\n\n".encode()
