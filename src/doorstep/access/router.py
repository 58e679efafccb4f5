"""The courier's entry request and entry status.

The request is the hot path: a plain Starlette endpoint that hands the whole decision to
the writer thread as one job, publishes the unlock command once that job's transaction has
committed, and (with `wait=unlocked`) awaits the hub's reply without holding a thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.routing import Route

from doorstep import db, security
from doorstep.access import remote, service
from doorstep.access.errors import HubTimeout
from doorstep.access.models import PROGRESS, Entry, EntryState
from doorstep.access.schemas import (
    ApprovalAnswer,
    EntryAbort,
    EntryCreate,
    EntryProof,
    EntryRead,
    RemoteUnlock,
)
from doorstep.accounts import signins, twofactor
from doorstep.accounts.models import User
from doorstep.accounts.service import Principal
from doorstep.deps import CourierBrief, Reader, ResidentBrief, Runtime, RuntimeDep, SessionDep
from doorstep.errors import InvalidRequest, NotAuthenticated, ServiceUnavailable, TooManyRequests
from doorstep.homes.models import AccessPoint
from doorstep.protocol.codes import Reason, advice_for
from doorstep.sql import Job, Writer

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["entries"])

WaitForParam = Annotated[
    EntryState | None, Query(description="long-poll: answer once the entry reaches this state")
]
TimeoutParam = Annotated[float, Query(ge=0, le=30, description="long-poll limit, seconds")]


AWAITING_ADVICE = "The resident is asked to approve; stay at the door, with the parcel."


def entry_read(entry: Entry | service.EntryView) -> EntryRead:
    advice = (
        AWAITING_ADVICE if entry.state == EntryState.AWAITING_APPROVAL else advice_for(entry.reason)
    )
    return EntryRead.model_validate(entry).model_copy(update={"advice": advice})


async def run_write(
    writer: Writer, job: Job[T], *, abandoned: Callable[[T], object] | None = None
) -> T:
    try:
        return await writer.run(job, abandoned=abandoned)
    except TimeoutError as exc:
        raise ServiceUnavailable("the database did not answer in time; no door was opened") from exc


async def run_decision(runtime: Runtime, job: Job[service.EntryDecision]) -> service.EntryDecision:
    """`run_write` for a job that decides an entry and may sign its command. If the
    request stops waiting (the database answered too late, or the request was cancelled)
    and the decision commits anyway, its command is never published: the entry then ends
    (`service.end_unsent`, `request_abandoned`) rather than hold its door until its
    grant expires."""
    writer = runtime.writer
    if writer is None:
        raise ServiceUnavailable("the database writer is not running")
    return await run_write(writer, job, abandoned=functools.partial(_end_abandoned, runtime))


def _end_abandoned(runtime: Runtime, decision: service.EntryDecision) -> None:
    """On the writer thread, for a decision committed after its request gave up."""
    if decision.command is None or runtime.writer is None:
        return  # nothing would have been sent: a denial, an entry already ended
    job = functools.partial(
        service.end_unsent, entry_ids=[decision.entry.id], now=runtime.clock.now(),
        reason=Reason.REQUEST_ABANDONED,
    )  # fmt: skip
    runtime.writer.submit(job)


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("a bearer token is required")
    return token.strip()


async def request_entry(request: Request) -> Response:
    """A courier at the door asks to enter with the scanned parcel and the phone's position.
    Every check runs; a denial says why and what to do instead. With a wait, 202 (not
    201) says the hub did not answer within it: the entry stays `authorized`; follow it.

    A plain Starlette endpoint, not a FastAPI route: this is the hot path, and FastAPI's
    dependency solving and double response validation cost more than the decision's own
    Python. It validates with the same pydantic model and answers with the same errors;
    `ENTRY_OPENAPI` documents it.
    """
    runtime: Runtime = request.app.state.runtime
    link, writer = runtime.link, runtime.writer
    if link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running")
    token = _bearer(request)
    wait = request.query_params.get("wait", "none")
    if wait not in WAITS:
        problem = "must be 'none', 'challenge' or 'unlocked'"
        raise InvalidRequest(
            f"query.wait: {problem}", details=[{"where": "query.wait", "problem": problem}]
        )
    body = _entry_body(await request.body())
    now = runtime.clock.now()
    entry_request = service.EntryRequest(
        body.delivery_id,
        body.barcode,
        body.latitude,
        body.longitude,
        body.accuracy_m,
        body.nobody_answered,
        body.device_key_id,
    )
    decision = await decide_entry(runtime, token, entry_request, now)
    runtime.metrics.decided("delivery", decision.entry.state, decision.entry.reason)
    # With a phone key the hub answers with a challenge (there is nothing to unlock until
    # the phone signs it), so both waits end there.
    sent = await send_and_await(runtime, decision, wait != "none")
    return _respond(sent.entry, 202 if sent.unanswered else 201)


WAITS = ("none", "challenge", "unlocked")


async def decide_entry(
    runtime: Runtime, token: str, request: service.EntryRequest, now: datetime
) -> service.EntryDecision:
    """`service.decide`, committed: in the hot paths' writer process when it runs, else
    as a job on the service's writer thread."""
    if runtime.hot is not None and runtime.hot.ready:
        try:
            return await runtime.hot.decide(token=token, request=request, now=now)
        except TimeoutError as exc:
            raise ServiceUnavailable(
                "the database did not answer in time; no door was opened"
            ) from exc
    return await run_decision(
        runtime,
        lambda tx: service.decide(
            tx,
            token=token,
            request=request,
            now=now,
            settings=runtime.settings.entry,
            signer=runtime.keys.signer,
        ),
    )


@dataclass(frozen=True, slots=True)
class Sent:
    """A decision's command published: the entry as it then is, and whether the wait for
    the hub's reply ran out (the command is out; the hub may still act on it)."""

    entry: service.EntryView
    unanswered: bool = False


# What a route's 202 means, for its OpenAPI document.
UNANSWERED = (
    "the hub did not answer within the wait (`hub_reply_timeout_seconds`): the entry, "
    "still `authorized`, may yet move; follow it (`GET /v1/entries/{id}?wait_for=...`)"
)


async def send_and_await(runtime: Runtime, decision: service.EntryDecision, wait: bool) -> Sent:
    """Publish the decision's command once committed; with `wait`, answer after the hub's
    reply (or the reply timeout, then `unanswered`) with the entry as it then is."""
    link, writer = runtime.link, runtime.writer
    assert link is not None and writer is not None
    if decision.command is None or decision.hub_id is None:
        return Sent(decision.entry)
    command, entry_id = decision.command, decision.entry.id
    # The entry is read in the transaction that stores the hub's reply: by then the hub's
    # event (published before its reply) is applied, and no writer job of its own is needed.
    waiter = link.expect_reply(command.command_id) if wait else None
    link.publish_command(decision.hub_id, command)
    if waiter is None:
        return Sent(decision.entry)
    current: service.EntryView | None = None
    try:
        answer = await asyncio.wait_for(
            asyncio.wrap_future(waiter.future), runtime.settings.entry.hub_reply_timeout_seconds
        )
        current = answer.loaded
    except TimeoutError:
        unanswered = True
    else:
        unanswered = False
    finally:  # answered, timed out or cancelled (the client went away): nobody waits now
        link.forget(command.command_id)
    if current is None:
        current = await run_write(writer, lambda tx: service.load_entry(tx, entry_id))
    return Sent(current or decision.entry, unanswered)


def _entry_body(raw: bytes) -> EntryCreate:
    try:
        return EntryCreate.model_validate_json(raw)
    except ValidationError as exc:
        details = [
            {
                "where": ".".join(("body", *(str(p) for p in error["loc"]))),
                "problem": error["msg"],
            }
            for error in exc.errors(include_url=False, include_input=False)
        ]
        first = details[0] if details else {"where": "body", "problem": "invalid"}
        raise InvalidRequest(f"{first['where']}: {first['problem']}", details=details) from exc


def _respond(entry: service.EntryView, status: int) -> Response:
    return Response(
        entry_read(entry).model_dump_json().encode(),
        status_code=status,
        media_type="application/json",
    )


ENTRY_ROUTE = Route("/v1/courier/entries", request_entry, methods=["POST"])


def entry_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the hot route, which FastAPI does not see, to the OpenAPI document."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (EntryCreate, EntryRead):
        components[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    schema.setdefault("paths", {})["/v1/courier/entries"] = {
        "post": {
            "tags": ["entries"],
            "summary": "Request Entry",
            "description": (request_entry.__doc__ or "").split("\n\n")[0],
            "parameters": [
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": list(WAITS), "default": "none"},
                    "description": "'challenge' or 'unlocked': answer once the hub has "
                    "answered: with its challenge for the phone key, or the bolt retracted, "
                    "or a refusal",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/EntryCreate"}}
                },
            },
            "responses": {
                "201": {
                    "description": "the entry, authorized or denied with a reason",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EntryRead"}}
                    },
                },
                "202": {
                    "description": f"with a wait: {UNANSWERED}",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EntryRead"}}
                    },
                },
            },
        }
    }
    return schema


@router.post(
    "/courier/entries/{entry_id}/unlock", response_model=EntryRead,
    responses={202: {"model": EntryRead, "description": UNANSWERED}},
)  # fmt: skip
async def unlock_with_proof(
    entry_id: str,
    body: EntryProof,
    runtime: RuntimeDep,
    courier: CourierBrief,
    response: Response,
    wait: Annotated[Literal["none", "unlocked"], Query()] = "unlocked",
) -> object:
    """The phone's signature of the door's challenge (`to_sign` of the entry, signed with
    the registered key, ES256, r||s, base64url). The hub checks it and unlocks; with
    `wait=unlocked` the answer comes once it has (or refused), or is 202 when the hub did
    not answer within the wait: the entry is still `authorized`; follow it."""
    writer = runtime.writer
    if runtime.link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running")
    now = runtime.clock.now()
    decision = await run_decision(
        runtime,
        lambda tx: service.unlock_with_proof(
            tx, courier=courier, entry_id=entry_id, proof=body.proof, now=now,
            settings=runtime.settings.entry,
        ),
    )  # fmt: skip
    return waited_read(response, await send_and_await(runtime, decision, wait == "unlocked"))


def waited_read(response: Response, sent: Sent) -> EntryRead:
    """The entry a route waited on the hub for; 202 when the hub did not answer in time."""
    if sent.unanswered:
        response.status_code = 202
    return entry_read(sent.entry)


@router.post("/courier/entries/{entry_id}/abort", response_model=EntryRead)
async def abort_entry(
    entry_id: str, body: EntryAbort, runtime: RuntimeDep, courier: CourierBrief
) -> object:
    """The courier calls the entry off at any point (a dog at the door, someone inside),
    without penalty. After an unlock the hub still verifies the relock; the entry then
    ends `aborted`, and the parcel is not marked delivered. While the door has not been
    opened, the hub is told to relock it now (or right after an unlock still on its way),
    not at the lock's own auto-relock."""
    writer = runtime.writer
    if writer is None:
        raise ServiceUnavailable("the database writer is not running")
    now = runtime.clock.now()
    decision = await run_write(
        writer,
        lambda tx: service.abort_entry(
            tx, courier=courier, entry_id=entry_id, why=body.reason, note=body.note, now=now,
            settings=runtime.settings.entry, signer=runtime.keys.signer,
        ),
    )  # fmt: skip
    publish_relock(runtime, decision)
    return entry_read(decision.entry)


def publish_relock(runtime: Runtime, decision: service.EntryDecision) -> None:
    """Publish an aborted entry's lock command, once its abort is committed. Without a
    hub link (none configured) nothing is sent: the lock's auto-relock still ends it."""
    if decision.command is not None and decision.hub_id is not None and runtime.link is not None:
        runtime.link.publish_command(decision.hub_id, decision.command)


@router.post("/entries/{entry_id}/approval", response_model=EntryRead)
async def answer_approval(
    entry_id: str, body: ApprovalAnswer, runtime: RuntimeDep, resident: ResidentBrief
) -> object:
    """The resident approves or declines an entry that is awaiting approval. Approved,
    the grant is issued and the door unlocks as for any entry."""
    link, writer = runtime.link, runtime.writer
    if link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running")
    now = runtime.clock.now()
    decision = await run_decision(
        runtime,
        lambda tx: service.answer_approval(
            tx,
            resident=resident,
            entry_id=entry_id,
            approve=body.decision == "approve",
            now=now,
            settings=runtime.settings.entry,
            signer=runtime.keys.signer,
        ),
    )
    if decision.command is not None and decision.hub_id is not None:
        link.publish_command(decision.hub_id, decision.command)
    return entry_read(decision.entry)


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
            db.read_only(session)  # and the next is a reader's too (`deps.get_session`)
            runtime.link.wait_for_change(min(remaining, 1.0))
            session.refresh(entry)
    read = entry_read(entry)
    if entry.challenge is not None and entry.access_point_id is not None:
        point = session.get(AccessPoint, entry.access_point_id)
        slug = point.slug if point is not None else None
        read.to_sign = service.to_sign(entry.id, entry.hub_id, slug, entry.challenge)
    return read


def _reached(entry: Entry, target: EntryState) -> bool:
    """True once `entry` is at or past `target`, or has ended some other way."""
    if entry.state not in PROGRESS:
        return True
    if target not in PROGRESS:
        return False
    return PROGRESS.index(EntryState(entry.state)) >= PROGRESS.index(target)


@router.post(
    "/homes/{home_id}/doors/{slug}/unlock", response_model=EntryRead,
    responses={202: {"model": EntryRead, "description": UNANSWERED}},
)  # fmt: skip
async def remote_unlock(
    home_id: str, slug: str, body: RemoteUnlock, request: Request, runtime: RuntimeDep,
    resident: ResidentBrief, response: Response,
    wait: Annotated[Literal["none", "unlocked"], Query()] = "unlocked",
) -> object:  # fmt: skip
    """The resident unlocks their own door from afar, after entering the password again
    (and the code, with two-step sign-in on). Camera first and the verified relock apply
    as for any entry; the resident is emailed. Wrong passwords count toward the sign-in
    limit. With `wait=unlocked`, 202 says the hub did not answer within the wait: the
    entry is still `authorized`; follow it."""
    link, writer = runtime.link, runtime.writer
    if link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running")
    client = request.client.host if request.client else "-"
    await run_in_threadpool(
        functools.partial(
            reauthenticate, runtime, resident, password=body.password, code=body.code,
            client=client, via=signins.Via.REMOTE_UNLOCK, undone="nothing was unlocked",
        )
    )  # fmt: skip
    now = runtime.clock.now()
    decision = await run_decision(
        runtime,
        lambda tx: remote.remote_unlock(
            tx, resident=resident, home_id=home_id, slug=slug, now=now,
            settings=runtime.settings.entry, signer=runtime.keys.signer,
        ),
    )  # fmt: skip
    return waited_read(response, await send_and_await(runtime, decision, wait == "unlocked"))


def reauthenticate(
    runtime: Runtime, resident: Principal, *, password: str, code: str | None, client: str,
    via: signins.Via, undone: str,
) -> None:  # fmt: skip
    """The password (and the second factor, when on) of the signed-in resident, sent
    again with a request that must not rest on a session alone (remote unlock, "revoke
    everything"); each attempt is audited (`accounts.signins`) and counts toward the
    sign-in limits. A refusal is `NotAuthenticated`, its message ending with `undone`
    (what was not done). Blocks: call it off the event loop."""
    user_id = resident.id
    limiter_key = f"reauth:{user_id}"
    if not runtime.login_limiter.allow(limiter_key, runtime.clock.timestamp()):
        raise TooManyRequests("too many attempts; wait a minute")
    now = runtime.clock.now()
    with runtime.sessions() as session:
        user = session.get(User, user_id)
        failure: signins.Failure | None
        if signins.paused(session, user_id=user_id, now=now):  # too many wrong lately
            security.verify_password(None, password)  # the same work, not checked
            ok, failure = False, signins.Failure.PAUSED
        else:
            ok = security.verify_password(user.password_hash if user else None, password)
            failure = None if ok else signins.Failure.WRONG_CREDENTIALS
        if ok and twofactor.is_on(session, user_id=user_id):
            try:
                ok = code is not None and twofactor.verify(
                    session, user_id=user_id, code=code, now=now, key=runtime.totp_key
                )
            except twofactor.CodeLocked:
                signins.reauth_failed(session, actor=resident.actor, user_id=user_id, via=via,
                                      client=client, reason=signins.Failure.CODE_LOCKED,
                                      now=now)  # fmt: skip
                session.commit()
                raise
            failure = None if ok else signins.Failure.WRONG_CODE
        if failure is None:
            signins.reauthenticated(session, actor=resident.actor, user_id=user_id, via=via,
                                    client=client, now=now)  # fmt: skip
        else:
            signins.reauth_failed(session, actor=resident.actor, user_id=user_id, via=via,
                                  client=client, reason=failure, now=now)  # fmt: skip
        session.commit()  # a spent recovery code stays spent; the attempt stays on record
    if not ok:
        raise NotAuthenticated(f"wrong password or code; {undone}")


class DoorLockRead(BaseModel):
    """A door the hub has verified locked: bolt locked and door closed."""

    door: str
    state: Literal["locked"] = "locked"
    command_id: str
    ended_entry: str | None = None  # the resident's own remote unlock this lock ended


@router.post("/homes/{home_id}/doors/{slug}/lock", response_model=DoorLockRead)
async def remote_lock(
    home_id: str, slug: str, runtime: RuntimeDep, resident: ResidentBrief
) -> object:
    """The resident locks their own door from afar ("Lock now"). Locking is the safe
    direction, so no password again (a stolen session could lock a door, never open
    one); the answer comes once the hub has verified the bolt locked and the door shut,
    or says why not (409 `lock_refused` with `details.reason`: `hub_offline`,
    `entry_in_progress`, `door_open`, `lock_jammed`, ...; 504 `hub_timeout`). Rate
    limited per resident; the request and its outcome are in the audit log."""
    order = await lock_door(runtime, resident, home_id, slug)
    return DoorLockRead(door=order.slug, command_id=order.command.command_id,
                        ended_entry=order.ends_entry)  # fmt: skip


async def lock_door(
    runtime: Runtime, resident: Principal, home_id: str, slug: str
) -> remote.LockOrder:
    """Check, sign and record the lock, publish it once committed, await the hub's verified
    answer and record it; raises unless the door is locked. Shared with the web page."""
    link, writer = runtime.link, runtime.writer
    if link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running")
    key, at = f"lock:{resident.id}", runtime.clock.timestamp()
    if not await run_in_threadpool(runtime.claim_limiter.allow, key, at):  # a database write
        raise TooManyRequests("too many lock requests; wait a minute")
    now = runtime.clock.now()
    order = await run_write(
        writer,
        lambda tx: remote.remote_lock(
            tx, resident=resident, home_id=home_id, slug=slug, now=now,
            settings=runtime.settings.entry, signer=runtime.keys.signer,
        ),
    )  # fmt: skip
    waiter = link.expect_reply(order.command.command_id)
    link.publish_command(order.hub_id, order.command)
    try:
        answer = await asyncio.wait_for(
            asyncio.wrap_future(waiter.future), runtime.settings.entry.hub_reply_timeout_seconds
        )
    except TimeoutError:
        done = runtime.clock.now()
        await run_write(
            writer,
            lambda tx: remote.record_unanswered(tx, resident=resident, order=order, now=done),
        )
        raise HubTimeout(
            "the door did not answer in time; check its state before you leave"
        ) from None
    finally:  # answered, timed out or cancelled (the client went away): nobody waits now
        link.forget(order.command.command_id)
    # The outcome's audit record was written when the hub's event was ingested, before
    # this reply (the hub journals and publishes the event first).
    problem = remote.lock_problem(answer.reply)
    if problem is not None:
        raise problem
    return order
