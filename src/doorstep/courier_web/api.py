"""The courier app's JSON routes (`/courier/api/...`), for its own script only.

Authenticated by the courier session cookie; every POST carries the session's CSRF token
in `X-CSRF-Token` (a cross-site page can neither read it nor send the header without a
CORS preflight this service never grants). Each route calls the same service functions
as the bearer API (`/v1/courier/...`), so every check and every object check is the
same: another courier's entry is "not found" here as there.

    GET  /courier/api/device-keys              this courier's active phone keys (ids)
    POST /courier/api/device-keys              register this phone's public JWK
    POST /courier/api/entries                  request entry; answers once the hub has
                                               answered (its challenge, or a refusal), or
                                               202 when it has not within the wait
    POST /courier/api/entries/{id}/unlock      the phone's signature of the challenge;
                                               answers once the hub unlocked or refused,
                                               or 202 as above
    POST /courier/api/entries/{id}/abort       call the entry off (pet/person/unsafe/other)
    GET  /courier/api/entries/{id}?seen=&wait= the entry; long-polls until its `version`
                                               differs from `seen` (at most `wait` s)
    GET  /courier/api/stops/{id}/entry         the stop's entry that has not ended yet
                                               (404 if none): for a page whose request
                                               got no answer (the network dropped)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Protocol, TypeVar

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from doorstep import db
from doorstep.access import service
from doorstep.access.devices import DeviceKey, DeviceKeyCreate
from doorstep.access.devices import register as register_device_key
from doorstep.access.router import Sent, decide_entry, publish_relock, send_and_await
from doorstep.access.router import run_write as write
from doorstep.access.schemas import EntryAbort, EntryCreate, EntryProof
from doorstep.accounts.service import Principal
from doorstep.courier_web import progress, stops
from doorstep.courier_web.deps import ApiCourier, WritingCourier
from doorstep.courier_web.schemas import CourierEntryRead, DeviceKeyIdRead
from doorstep.deps import Runtime, RuntimeDep
from doorstep.errors import NotFound, ServiceUnavailable
from doorstep.sql import Tx, Writer
from doorstep.web.deps import UnitOfWork
from doorstep.web.rendering import NO_STORE

MAX_WAIT_SECONDS = 25.0
DISCONNECT_CHECK_SECONDS = 1.0

router = APIRouter(prefix="/courier/api", include_in_schema=False)


class _Versioned(Protocol):
    @property
    def version(self) -> str: ...


Polled = TypeVar("Polled", bound=_Versioned)


class _Reads(Protocol):
    def __call__(self, entry: service.EntryView, *, unanswered: bool) -> CourierEntryRead: ...


def hub_writer(runtime: Runtime) -> Writer:
    """The writer thread, when the hub link runs (an entry needs both)."""
    if runtime.link is None or runtime.writer is None:
        raise ServiceUnavailable("the hub link is not running")
    return runtime.writer


@router.get("/device-keys", response_model=list[DeviceKeyIdRead])
def device_keys(session: UnitOfWork, courier: ApiCourier, response: Response) -> object:
    response.headers.update(NO_STORE)
    return session.scalars(
        select(DeviceKey)
        .where(DeviceKey.user_id == courier.principal.id, DeviceKey.revoked_at.is_(None))
        .order_by(DeviceKey.created_at)
    ).all()


@router.post("/device-keys", status_code=201, response_model=DeviceKeyIdRead)
def register_phone(
    body: DeviceKeyCreate, session: UnitOfWork, runtime: RuntimeDep, courier: WritingCourier
) -> object:
    """The same registration as `POST /v1/courier/device-keys` (its checks, its limit of
    keys per courier, its audit record): that route's function, called as a function."""
    return register_device_key(body, session, runtime, courier.principal)


@router.post("/entries", status_code=201, response_model=CourierEntryRead)
async def request_entry(
    body: EntryCreate, runtime: RuntimeDep, courier: WritingCourier, response: Response
) -> CourierEntryRead:
    """As `POST /v1/courier/entries?wait=challenge`: every check in one writer job (in the
    hot paths' writer process), the command published after commit, the answer once the
    hub has answered; 202 when it did not within the wait (the entry is still
    `authorized`: follow it)."""
    hub_writer(runtime)
    request = service.EntryRequest(
        body.delivery_id,
        body.barcode,
        body.latitude,
        body.longitude,
        body.accuracy_m,
        body.nobody_answered,
        body.device_key_id,
    )
    now = runtime.clock.now()
    decision = await decide_entry(runtime, courier.token, request, now)
    runtime.metrics.decided("delivery", decision.entry.state, decision.entry.reason)
    return waited(response, await send_and_await(runtime, decision, True))


@router.post("/entries/{entry_id}/unlock", response_model=CourierEntryRead)
async def unlock(
    entry_id: str, body: EntryProof, runtime: RuntimeDep, courier: WritingCourier,
    response: Response,
) -> CourierEntryRead:  # fmt: skip
    """As `POST /v1/courier/entries/{id}/unlock?wait=unlocked`, 202 included."""
    writer = hub_writer(runtime)
    now = runtime.clock.now()
    decision = await write(
        writer,
        lambda tx: service.unlock_with_proof(
            tx, courier=courier.principal, entry_id=entry_id, proof=body.proof, now=now,
            settings=runtime.settings.entry,
        ),
    )  # fmt: skip
    return waited(response, await send_and_await(runtime, decision, True))


def waited(response: Response, sent: Sent, read: _Reads = progress.read) -> CourierEntryRead:
    """The entry a route waited on the hub for, as the app shows it (`read`); 202, as the
    API's `access.router.waited_read`, when the hub did not answer in time."""
    if sent.unanswered:
        response.status_code = 202
    return read(sent.entry, unanswered=sent.unanswered)


@router.post("/entries/{entry_id}/abort", response_model=CourierEntryRead)
async def abort(
    entry_id: str, body: EntryAbort, runtime: RuntimeDep, courier: WritingCourier
) -> CourierEntryRead:
    writer = hub_writer(runtime)
    now = runtime.clock.now()
    decision = await write(
        writer,
        lambda tx: service.abort_entry(
            tx, courier=courier.principal, entry_id=entry_id, why=body.reason, note=body.note,
            now=now, settings=runtime.settings.entry, signer=runtime.keys.signer,
        ),
    )  # fmt: skip
    publish_relock(runtime, decision)
    return progress.read(decision.entry, aborting=True)


WaitParam = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)]


@router.get("/entries/{entry_id}", response_model=CourierEntryRead)
async def follow(
    entry_id: str,
    request: Request,
    runtime: RuntimeDep,
    courier: ApiCourier,
    response: Response,
    seen: Annotated[str, Query(max_length=64)] = "",
    wait: WaitParam = 0.0,
) -> CourierEntryRead:
    """The entry now, or (with `seen`) once it differs from the version the page shows."""
    current = await long_poll(
        request, runtime, lambda: _load(runtime, courier.principal, entry_id), seen, wait
    )
    response.headers.update(NO_STORE)
    return current


@router.get("/stops/{delivery_id}/entry", response_model=CourierEntryRead)
async def open_entry(
    delivery_id: str, runtime: RuntimeDep, courier: ApiCourier, response: Response
) -> CourierEntryRead:
    """This courier's entry at this stop that has not ended, as the stop page picks up on
    a reload; "not found" when there is none, or the stop is not this courier's."""

    def load() -> str | None:
        with runtime.sessions() as session:
            db.read_only(session)
            stops.one(session, courier=courier.principal, delivery_id=delivery_id)
            return stops.open_entry(session, courier=courier.principal, delivery_id=delivery_id)

    entry_id = await run_in_threadpool(load)
    if entry_id is None:
        raise NotFound("no open entry at this stop")
    response.headers.update(NO_STORE)
    return await run_in_threadpool(_load, runtime, courier.principal, entry_id)


async def long_poll(
    request: Request, runtime: Runtime, load: Callable[[], Polled], seen: str, wait: float
) -> Polled:
    """`load()` (run off the loop) now, or once its `version` differs from `seen`, for at
    most `wait` seconds: waits a second at a time for the hub link's next change, and
    stops waiting when the page has gone."""
    deadline = runtime.clock.timestamp() + wait
    while True:
        current = await run_in_threadpool(load)
        remaining = deadline - runtime.clock.timestamp()
        done = current.version != seen or remaining <= 0 or runtime.link is None
        if done or await request.is_disconnected():
            return current
        assert runtime.link is not None
        await run_in_threadpool(
            runtime.link.wait_for_change, min(remaining, DISCONNECT_CHECK_SECONDS)
        )


def _load(runtime: Runtime, courier: Principal, entry_id: str) -> CourierEntryRead:
    """The courier's entry (`service.get_entry` decides who may read it) on a short
    session of its own, closed before any wait."""
    with runtime.sessions() as session:
        db.read_only(session)
        entry = service.get_entry(session, principal=courier, entry_id=entry_id)
        aborting = entry.abort_reason is not None
        view = service.load_entry(Tx.of_session(session), entry_id)
    assert view is not None  # it was just read
    return progress.read(view, aborting=aborting)
