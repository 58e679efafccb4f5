"""The courier's entry request and entry status.

The request is the hot path: an async handler that hands the whole decision to the writer
thread as one job, publishes the unlock command once that job's transaction has
committed, and (with `wait=unlocked`) awaits the hub's reply without holding a thread.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Query, Request

from doorstep.access import service
from doorstep.access.models import PROGRESS, Entry, EntryState
from doorstep.access.schemas import EntryCreate, EntryRead
from doorstep.deps import Reader, RuntimeDep, SessionDep
from doorstep.errors import NotAuthenticated, ServiceUnavailable
from doorstep.protocol.codes import advice_for
from doorstep.sql import Job, Writer

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["entries"])

WaitParam = Annotated[
    Literal["none", "unlocked"],
    Query(description="'unlocked': answer once the hub confirms the bolt retracted or refused"),
]
WaitForParam = Annotated[
    EntryState | None, Query(description="long-poll: answer once the entry reaches this state")
]
TimeoutParam = Annotated[float, Query(ge=0, le=30, description="long-poll limit, seconds")]


def _read(entry: Entry | service.EntryView) -> EntryRead:
    return EntryRead.model_validate(entry).model_copy(update={"advice": advice_for(entry.reason)})


async def _write(writer: Writer, job: Job[T]) -> T:
    try:
        return await writer.run(job)
    except TimeoutError as exc:
        raise ServiceUnavailable("the database did not answer in time; no door was opened") from exc


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("a bearer token is required")
    return token.strip()


@router.post("/courier/entries", status_code=201, response_model=EntryRead)
async def request_entry(
    body: EntryCreate, request: Request, runtime: RuntimeDep, wait: WaitParam = "none"
) -> object:
    """A courier at the door asks to enter with the scanned parcel and the phone's position.
    Every check runs; a denial says why and what to do instead."""
    link, writer = runtime.link, runtime.writer
    if link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running")
    token, now, entry_request = (
        _bearer(request),
        runtime.clock.now(),
        service.EntryRequest(**body.model_dump()),
    )
    decision = await _write(
        writer,
        lambda tx: service.decide(
            tx,
            token=token,
            request=entry_request,
            now=now,
            settings=runtime.settings.entry,
            signer=runtime.keys.signer,
        ),
    )
    if decision.command is None or decision.hub_id is None:
        return _read(decision.entry)
    command = decision.command
    waiter = link.expect_reply(command.command_id) if wait == "unlocked" else None
    link.publish_command(decision.hub_id, command)
    if waiter is None:
        return _read(decision.entry)
    try:
        await asyncio.wait_for(
            asyncio.wrap_future(waiter.future), runtime.settings.entry.hub_reply_timeout_seconds
        )
    except TimeoutError:
        link.forget(command.command_id)
    entry_id = decision.entry.id
    current = await _write(writer, lambda tx: service.load_entry(tx, entry_id))
    return _read(current or decision.entry)


@router.get("/entries/{entry_id}", response_model=EntryRead)
def get_entry(
    entry_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    reader: Reader,
    wait_for: WaitForParam = None,
    timeout: TimeoutParam = 10.0,
) -> object:
    entry = service.get_entry(session, principal=reader, entry_id=entry_id)
    if wait_for is not None and runtime.link is not None:
        deadline = runtime.clock.timestamp() + timeout
        while not _reached(entry, wait_for):
            remaining = deadline - runtime.clock.timestamp()
            if remaining <= 0:
                break
            session.commit()  # end the read transaction so the next read sees new data
            runtime.link.wait_for_change(min(remaining, 1.0))
            session.refresh(entry)
    return _read(entry)


def _reached(entry: Entry, target: EntryState) -> bool:
    """True once `entry` is at or past `target`, or has ended some other way."""
    if entry.state not in PROGRESS:
        return True
    if target not in PROGRESS:
        return False
    return PROGRESS.index(EntryState(entry.state)) >= PROGRESS.index(target)
