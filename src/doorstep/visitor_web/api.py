"""The guest app's JSON routes (`/guest/api/...`), for its own script only.

Authenticated by the guest session cookie; every POST carries the session's CSRF token in
`X-CSRF-Token`. Each route calls the same functions as the bearer API (`/v1/me/...`,
`/v1/visits`), so every check is the same; a grant or entry that is not this person's is
"not found" (404), here before the entry engine is asked.

    GET  /guest/api/device-keys            this person's active phone keys (ids)
    POST /guest/api/device-keys            register this phone's public JWK
    POST /guest/api/visits                 ask to enter on a grant; answers once the hub
                                           has answered (its challenge, or a refusal),
                                           or 202 when it has not within the wait
    POST /guest/api/visits/{id}/unlock     the phone's signature of the challenge;
                                           answers once the hub unlocked or refused,
                                           or 202 as above
    GET  /guest/api/entries/{id}?seen=&wait=  the entry; long-polls until its `version`
                                           differs from `seen` (at most `wait` s)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from doorstep import db
from doorstep.access import service, visits
from doorstep.access.devices import DeviceKeyCreate
from doorstep.access.router import run_write as write
from doorstep.access.router import send_and_await
from doorstep.access.schemas import EntryProof
from doorstep.courier_web import api as courier_api
from doorstep.courier_web.api import MAX_WAIT_SECONDS, hub_writer, long_poll, waited
from doorstep.courier_web.schemas import CourierEntryRead, DeviceKeyIdRead
from doorstep.deps import Runtime, RuntimeDep
from doorstep.errors import NotFound
from doorstep.grants.models import AccessGrant
from doorstep.grants.schemas import VisitCreate
from doorstep.sql import Tx
from doorstep.visitor_web import progress
from doorstep.visitor_web.deps import ApiPerson, WritingPerson
from doorstep.web.deps import UnitOfWork
from doorstep.web.phone_session import SignedIn
from doorstep.web.rendering import NO_STORE

router = APIRouter(prefix="/guest/api", include_in_schema=False)


@router.get("/device-keys", response_model=list[DeviceKeyIdRead])
def device_keys(session: UnitOfWork, person: ApiPerson, response: Response) -> object:
    return courier_api.device_keys(session, person, response)


@router.post("/device-keys", status_code=201, response_model=DeviceKeyIdRead)
def register_phone(
    body: DeviceKeyCreate, session: UnitOfWork, runtime: RuntimeDep, person: WritingPerson
) -> object:
    """`POST /v1/me/device-keys`'s registration (checks, limit, audit), as a function."""
    return courier_api.register_phone(body, session, runtime, person)


@router.post("/visits", status_code=201, response_model=CourierEntryRead)
async def request_visit(
    body: VisitCreate, runtime: RuntimeDep, person: WritingPerson, response: Response
) -> CourierEntryRead:
    """As `POST /v1/visits?wait=challenge`, on a grant that is this person's; 202 when
    the hub did not answer within the wait (the entry is still `authorized`: follow it)."""
    writer = hub_writer(runtime)
    await run_in_threadpool(_own_grant, runtime, person, body.grant_id)
    request = visits.VisitRequest(
        body.grant_id, body.latitude, body.longitude, body.accuracy_m, body.device_key_id
    )
    now = runtime.clock.now()
    decision = await write(
        writer,
        lambda tx: visits.decide_visit(
            tx, token=person.token, request=request, now=now, settings=runtime.settings.entry,
            signer=runtime.keys.signer,
        ),
    )  # fmt: skip
    runtime.metrics.decided("visit", decision.entry.state, decision.entry.reason)
    return waited(response, await send_and_await(runtime, decision, True), progress.read)


def _own_grant(runtime: Runtime, person: SignedIn, grant_id: str) -> None:
    """Another person's grant is "not found". One of theirs that is revoked, or whose
    provider let them go, goes on to the engine, which says why it is refused."""
    with runtime.sessions() as session:
        db.read_only(session)
        grant = session.get(AccessGrant, grant_id)
    if grant is None or grant.grantee_id != person.principal.id:
        raise NotFound("no such access")


@router.post("/visits/{entry_id}/unlock", response_model=CourierEntryRead)
async def unlock(
    entry_id: str, body: EntryProof, runtime: RuntimeDep, person: WritingPerson,
    response: Response,
) -> CourierEntryRead:  # fmt: skip
    """As `POST /v1/visits/{id}/unlock?wait=unlocked`, 202 included."""
    writer = hub_writer(runtime)
    now = runtime.clock.now()
    decision = await write(
        writer,
        lambda tx: service.unlock_with_proof(
            tx, courier=person.principal, entry_id=entry_id, proof=body.proof, now=now,
            settings=runtime.settings.entry,
        ),
    )  # fmt: skip
    return waited(response, await send_and_await(runtime, decision, True), progress.read)


WaitParam = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)]


@router.get("/entries/{entry_id}", response_model=CourierEntryRead)
async def follow(
    entry_id: str,
    request: Request,
    runtime: RuntimeDep,
    person: ApiPerson,
    response: Response,
    seen: Annotated[str, Query(max_length=64)] = "",
    wait: WaitParam = 0.0,
) -> CourierEntryRead:
    """The entry now, or (with `seen`) once it differs from the version the page shows."""
    current = await long_poll(
        request, runtime, lambda: _load(runtime, person, entry_id), seen, wait
    )
    response.headers.update(NO_STORE)
    return current


def _load(runtime: Runtime, person: SignedIn, entry_id: str) -> CourierEntryRead:
    """The person's entry (`service.get_entry` decides who may read it) on a short session
    of its own, closed before any wait."""
    with runtime.sessions() as session:
        db.read_only(session)
        service.get_entry(session, principal=person.principal, entry_id=entry_id)
        view = service.load_entry(Tx.of_session(session), entry_id)
    assert view is not None  # it was just read
    return progress.read(view)
