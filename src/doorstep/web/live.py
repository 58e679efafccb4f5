"""The pages' live parts: a Server-Sent Events stream that says "something changed" and
JSON snapshots the page then reads.

    GET /homes/{home_id}/stream   text/event-stream: an event per audit record of the home
    GET /homes/{home_id}/live     JSON: the home's status, newest entries, approvals
    GET /approvals/stream         text/event-stream: the same for every home of the resident
    GET /approvals/live           JSON: every entry awaiting the resident's answer

The stream carries no data of its own beyond the record's action (`event: change`,
`data: {"action", "home_id"}`), so a page always draws from one snapshot, and a page that
reconnects (EventSource does, after `retry: 2000`) reads a fresh snapshot on `open`:
nothing is lost to a dropped connection. Records reach the stream after their transaction
commits (`doorstep.livebus`). Every `KEEPALIVE_SECONDS` the stream sends a comment and
checks that the session is still valid; a signed-out or expired session ends it, and the
reconnect then gets 401. Every stream ends after `STREAM_SECONDS` anyway, and the page
reconnects. Not signed in: 401; another resident's home: 404, as everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from doorstep.deps import Runtime, RuntimeDep
from doorstep.errors import DoorstepError
from doorstep.homes import service as homes
from doorstep.homes.models import Home
from doorstep.livebus import BUS
from doorstep.web import sessions
from doorstep.web.approvals import Awaiting, awaiting
from doorstep.web.deps import SignedInDep, UnitOfWork, WebDep
from doorstep.web.rendering import NO_STORE, local_time
from doorstep.web.schemas import (
    ApprovalRead,
    ApprovalsRead,
    EntrySummaryRead,
    LiveRead,
    StatusItemRead,
)
from doorstep.web.status import home_status
from doorstep.web.timeline import TimelineEntry, timeline

RECENT_ENTRIES = 5
KEEPALIVE_SECONDS = 15.0
# A stream ends after this long and the page reconnects (a fresh session check, and no
# connection held for ever by a tab left open).
STREAM_SECONDS = 600.0
STREAM_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}

router = APIRouter(include_in_schema=False)


@router.get("/homes/{home_id}/live", response_model=LiveRead)
def live(home_id: str, session: UnitOfWork, user: SignedInDep, response: Response) -> LiveRead:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    response.headers.update(NO_STORE)
    return LiveRead(
        home_id=home.id,
        status=[StatusItemRead.model_validate(item) for item in home_status(session, home=home)],
        entries=[
            summary(entry, home) for entry in timeline(session, home=home, limit=RECENT_ENTRIES)
        ],
        approvals=[
            approval(item) for item in awaiting(session, owner=user.principal, home_id=home.id)
        ],
    )


@router.get("/approvals/live", response_model=ApprovalsRead)
def approvals_live(session: UnitOfWork, user: SignedInDep, response: Response) -> ApprovalsRead:
    response.headers.update(NO_STORE)
    return ApprovalsRead(
        approvals=[approval(item) for item in awaiting(session, owner=user.principal)]
    )


@router.get("/homes/{home_id}/stream")
async def home_stream(
    home_id: str,
    request: Request,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
) -> StreamingResponse:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    token = request.cookies.get(web.cookies.session_cookie, "")
    return _streaming(runtime, token, [home.id])


@router.get("/approvals/stream")
async def approvals_stream(
    request: Request, session: UnitOfWork, user: SignedInDep, runtime: RuntimeDep, web: WebDep
) -> StreamingResponse:
    home_ids = [home.id for home in homes.list_homes(session, owner=user.principal)]
    token = request.cookies.get(web.cookies.session_cookie, "")
    return _streaming(runtime, token, home_ids)


def _streaming(runtime: Runtime, token: str, home_ids: list[str]) -> StreamingResponse:
    return StreamingResponse(
        _changes(runtime, token, home_ids), media_type="text/event-stream", headers=STREAM_HEADERS
    )


async def _changes(runtime: Runtime, token: str, home_ids: list[str]) -> AsyncIterator[bytes]:
    queues = [(home_id, BUS.subscribe(home_id)) for home_id in home_ids]
    waiting: dict[asyncio.Future[Any], int] = {}
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + STREAM_SECONDS
    try:
        yield b"retry: 2000\n\n"
        while (left := ends_at - loop.time()) > 0:
            for index, (_home, queue) in enumerate(queues):
                if index not in waiting.values():
                    waiting[asyncio.ensure_future(queue.get())] = index
            done = await _first_done(waiting, min(KEEPALIVE_SECONDS, left))
            if not done:
                if not await asyncio.to_thread(_still_signed_in, runtime, token):
                    return
                yield b": keepalive\n\n"
                continue
            for future in done:
                index = waiting.pop(future)
                record = future.result()
                if record is None:  # fell too far behind: end; the page reconnects
                    return
                yield _frame(queues[index][0], record)
    finally:
        for future in waiting:
            future.cancel()
        for home_id, queue in queues:
            BUS.unsubscribe(home_id, queue)


async def _first_done(
    waiting: dict[asyncio.Future[Any], int], timeout: float
) -> set[asyncio.Future[Any]]:
    if not waiting:  # no homes: only the session check and the keepalive
        await asyncio.sleep(timeout)
        return set()
    done, _pending = await asyncio.wait(
        waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    return done


def _still_signed_in(runtime: Runtime, token: str) -> bool:
    with runtime.sessions() as session:
        try:
            sessions.resolve(session, token=token, now=runtime.clock.now())
        except DoorstepError:
            return False
    return True


def _frame(home_id: str, record: dict[str, Any]) -> bytes:
    body = orjson.dumps({"action": record["action"], "home_id": home_id}).decode()
    return f"id: {record['seq']}\nevent: change\ndata: {body}\n\n".encode()


def summary(entry: TimelineEntry, home: Home) -> EntrySummaryRead:
    return EntrySummaryRead(
        id=entry.id,
        who=entry.who,
        how=entry.how,
        at=entry.at,
        when=local_time(entry.at, home.timezone),
        outcome=entry.outcome,
        tone=entry.tone,
        reason=entry.reason,
        flags=list(entry.flags),
    )


def approval(item: Awaiting) -> ApprovalRead:
    return ApprovalRead(
        id=item.id,
        home_id=item.home_id,
        home_name=item.home_name,
        who=item.who,
        carrier=item.carrier,
        door=item.door,
        barcode=item.barcode,
        asked_at=item.asked_at,
        asked_when=local_time(item.asked_at, item.timezone),
        deadline=item.deadline,
    )
