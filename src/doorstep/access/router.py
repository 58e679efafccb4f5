"""The courier's entry request and entry status."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from doorstep.access import service
from doorstep.access.models import PROGRESS, Entry, EntryState
from doorstep.access.schemas import EntryCreate, EntryRead
from doorstep.deps import Courier, Reader, RuntimeDep, SessionDep
from doorstep.errors import ServiceUnavailable
from doorstep.protocol.codes import advice_for

router = APIRouter(prefix="/v1", tags=["entries"])

WaitParam = Annotated[
    Literal["none", "unlocked"],
    Query(description="'unlocked': answer once the hub confirms the bolt retracted or refused"),
]
WaitForParam = Annotated[
    EntryState | None, Query(description="long-poll: answer once the entry reaches this state")
]
TimeoutParam = Annotated[float, Query(ge=0, le=30, description="long-poll limit, seconds")]


def _read(entry: Entry) -> EntryRead:
    advice = advice_for(entry.reason)
    return EntryRead.model_validate(entry).model_copy(update={"advice": advice})


@router.post("/courier/entries", status_code=201, response_model=EntryRead)
def request_entry(
    body: EntryCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    courier: Courier,
    wait: WaitParam = "none",
) -> object:
    link = runtime.link
    if link is None:
        raise ServiceUnavailable("the hub link is not running")
    decision = service.request_entry(
        session,
        courier=courier,
        request=service.EntryRequest(**body.model_dump()),
        now=runtime.clock.now(),
        settings=runtime.settings.entry,
        signer=runtime.keys.signer,
        publish=link.publish_command,
    )
    if not decision.authorized or wait == "none":
        return _read(decision.entry)
    return _wait_for_hub(session, runtime, decision)


def _wait_for_hub(session: Session, runtime: RuntimeDep, decision: service.EntryDecision) -> object:
    link = runtime.link
    command = decision.command
    assert link is not None and command is not None
    waiter = link.expect_reply(command.command_id)
    session.commit()  # publishes the command (after_commit); the reply can only follow
    reply = waiter.wait(runtime.settings.entry.hub_reply_timeout_seconds)
    if reply is None:
        link.forget(command.command_id)
    session.refresh(decision.entry)
    return _read(decision.entry)


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
