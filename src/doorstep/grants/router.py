"""Guests' access over HTTP: the resident's grants and revocations, invitations, and the
visitor's own grants and entries (`/v1/visits`, through the courier's entry engine)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from doorstep.access import service as entries
from doorstep.access import visits
from doorstep.access.router import (
    UNANSWERED,
    reauthenticate,
    run_decision,
    send_and_await,
    waited_read,
)
from doorstep.access.schemas import EntryProof, EntryRead
from doorstep.accounts import signins
from doorstep.deps import (
    Resident,
    ResidentBrief,
    Runtime,
    RuntimeDep,
    SessionDep,
    Visitor,
    VisitorBrief,
)
from doorstep.errors import NotAuthenticated, ServiceUnavailable, TooManyRequests
from doorstep.grants import service, shadow
from doorstep.grants.models import AccessGrant
from doorstep.grants.schemas import (
    AccountRead,
    GrantCreate,
    GrantCreated,
    GrantRead,
    InvitationAccept,
    RevokedEverything,
    RevokeEverything,
    VisitCreate,
)
from doorstep.homes.models import AccessPoint

router = APIRouter(prefix="/v1", tags=["guests"])

INVITE_PATH = "/guest/accept"


def publish_bumped(runtime: Runtime, session: Session) -> None:
    """Commit, then publish the desired document of every hub this request changed."""
    hubs = shadow.bumped_hubs(session)
    session.commit()
    if runtime.shadows is not None:
        for hub_id in sorted(hubs):
            runtime.shadows.publish(hub_id)


def grant_read(session: Session, grant: AccessGrant) -> GrantRead:
    point = session.get(AccessPoint, grant.access_point_id)
    if point is None or point.hub_id is None:
        return GrantRead.of(grant)
    version, reported, states = shadow.reported_state(session, point.hub_id)
    held = states.get(grant.id)  # the code's state in the hub's last report, if it holds it
    if grant.revoked_at is not None:
        needed = grant.revoked_version
        # The hub has applied a version without it AND no longer holds the code: one it
        # could not take off an unreachable lock stays in its report as
        # `failed:lock_unreachable`, and still opens the door until the retry clears it.
        enforced = None if needed is None else reported >= needed and held is None
    elif grant.pin_sealed is not None:
        needed = version  # a code is on the lock once the hub applied a version with it
        enforced = reported >= needed and held is not None and not held.startswith("failed")
    else:
        needed, enforced = None, None
    return GrantRead.of(grant, shadow_version=needed, enforced_at_hub=enforced)


@router.post("/homes/{home_id}/grants", status_code=201, response_model=GrantCreated)
def create_grant(
    home_id: str, body: GrantCreate, request: Request, session: SessionDep, runtime: RuntimeDep,
    owner: Resident,
) -> object:  # fmt: skip
    """Give a guest access to one door: by the app (the guest is invited by email) or by
    a keypad code (programmed on the lock by the hub; shown here once)."""
    spec = service.GrantSpec(
        access_point=body.access_point, label=body.label, kind=body.kind, method=body.method,
        email=body.email, starts_at=body.starts_at, ends_at=body.ends_at,
        windows=tuple(window.model_dump() for window in body.windows),
        uses_limit=body.uses_limit, require_geofence=body.require_geofence, pin=body.pin,
        notes=body.notes,
    )  # fmt: skip
    base = runtime.settings.public_url or str(request.base_url)
    created = service.create_grant(
        session, owner=owner, home_id=home_id, spec=spec, now=runtime.clock.now(),
        invite_url=base.rstrip("/") + INVITE_PATH,
    )  # fmt: skip
    publish_bumped(runtime, session)
    return GrantCreated(grant=grant_read(session, created.grant), pin=created.pin)


@router.get("/homes/{home_id}/grants", response_model=list[GrantRead])
def list_grants(home_id: str, session: SessionDep, owner: Resident) -> object:
    grants = service.list_grants(session, owner=owner, home_id=home_id)
    return [grant_read(session, grant) for grant in grants]


@router.get("/grants/{grant_id}", response_model=GrantRead)
def get_grant(grant_id: str, session: SessionDep, owner: Resident) -> object:
    return grant_read(session, service.owned_grant(session, owner=owner, grant_id=grant_id))


@router.delete("/grants/{grant_id}", response_model=GrantRead)
def revoke_grant(
    grant_id: str, session: SessionDep, runtime: RuntimeDep, owner: Resident
) -> object:
    """Revoke at once: denied by the service from now on; the hub clears the code and
    refuses the grant's unused tokens (`enforced_at_hub` turns true when it has)."""
    grant = service.owned_grant(session, owner=owner, grant_id=grant_id)
    service.revoke(session, grant, actor=owner.actor, now=runtime.clock.now())
    publish_bumped(runtime, session)
    return grant_read(session, grant)


@router.post("/homes/{home_id}/revoke-everything", response_model=RevokedEverything)
def revoke_everything(
    home_id: str, body: RevokeEverything, request: Request, session: SessionDep,
    runtime: RuntimeDep, owner: ResidentBrief,
) -> object:  # fmt: skip
    """Every guest grant and provider appointment of the home, revoked now, after the
    password again (and the code, with two-step sign-in on), as for a remote unlock: a
    wrong one is 401 and revokes nothing, and counts toward the sign-in limits.

    The password is checked before `session` is first used: its transaction (on SQLite,
    the write lock) begins only after the check's own has committed."""
    client = request.client.host if request.client else "-"
    reauthenticate(
        runtime, owner, password=body.password, code=body.code, client=client,
        via=signins.Via.REVOKE_EVERYTHING, undone="nothing was revoked",
    )  # fmt: skip
    revoked = service.revoke_everything(
        session, owner=owner, home_id=home_id, now=runtime.clock.now()
    )
    publish_bumped(runtime, session)
    return RevokedEverything(revoked=len(revoked))


@router.post("/invitations/accept", response_model=AccountRead)
def accept_invitation(
    body: InvitationAccept, request: Request, session: SessionDep, runtime: RuntimeDep
) -> object:
    """Accept a guest's or a worker's invitation: choose a password (then sign in at
    `/v1/auth/token`). The token comes from the link in the email. Guesses are limited.
    An account that already has a password (a guest invited again before accepting)
    accepts its other invitations with that password, which stays as it is; a wrong one
    is 401 `existing_password_required` and is audited as a failed sign-in."""
    client = request.client.host if request.client else "unknown"
    if not runtime.claim_limiter.allow(f"invite:{client}", runtime.clock.timestamp()):
        raise TooManyRequests("too many attempts; wait a minute")
    try:
        user = service.accept_invitation(
            session, token=body.token, password=body.password, name=body.name,
            now=runtime.clock.now(), via=signins.Via.API, client=client,
        )  # fmt: skip
    except NotAuthenticated:
        session.commit()  # the refusal's record, if any; nothing else was changed
        raise
    return user


@router.get("/me/grants", response_model=list[GrantRead])
def my_grants(session: SessionDep, visitor: Visitor) -> object:
    """A guest's or worker's grants still in force."""
    return [GrantRead.of(grant) for grant in service.grants_of_visitor(session, visitor=visitor)]


WaitParam = Annotated[Literal["none", "challenge"], Query()]


@router.post(
    "/visits", status_code=201, response_model=EntryRead,
    responses={202: {"model": EntryRead, "description": UNANSWERED}},
)  # fmt: skip
async def request_visit(
    body: VisitCreate, runtime: RuntimeDep, visitor: VisitorBrief, request: Request,
    response: Response, wait: WaitParam = "none",
) -> object:  # fmt: skip
    """A guest or worker at the door asks to enter on one of their grants. Every check
    runs (see `doorstep.access.visits`); a denial says why. With a phone key, the hub
    answers with a challenge to sign (`wait=challenge` answers once it has, or is 202
    when the hub did not answer within the wait: the entry is still `authorized`; follow
    it)."""
    writer = runtime.writer
    if runtime.link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running")
    token = request.headers["authorization"].partition(" ")[2].strip()
    visit = visits.VisitRequest(
        body.grant_id, body.latitude, body.longitude, body.accuracy_m, body.device_key_id
    )
    now = runtime.clock.now()
    decision = await run_decision(
        runtime,
        lambda tx: visits.decide_visit(
            tx, token=token, request=visit, now=now, settings=runtime.settings.entry,
            signer=runtime.keys.signer,
        ),
    )  # fmt: skip
    del visitor  # authenticated and authorized above; decide_visit checks the token again
    runtime.metrics.decided("visit", decision.entry.state, decision.entry.reason)
    return waited_read(response, await send_and_await(runtime, decision, wait != "none"))


@router.post(
    "/visits/{entry_id}/unlock", response_model=EntryRead,
    responses={202: {"model": EntryRead, "description": UNANSWERED}},
)  # fmt: skip
async def unlock_visit(
    entry_id: str, body: EntryProof, runtime: RuntimeDep, visitor: VisitorBrief,
    response: Response, wait: Annotated[Literal["none", "unlocked"], Query()] = "unlocked",
) -> object:  # fmt: skip
    """The phone's signature of the door's challenge; the hub checks it and unlocks (202
    when it did not answer within the wait: the entry is still `authorized`; follow it)."""
    writer = runtime.writer
    if runtime.link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running")
    now = runtime.clock.now()
    decision = await run_decision(
        runtime,
        lambda tx: entries.unlock_with_proof(
            tx, courier=visitor, entry_id=entry_id, proof=body.proof, now=now,
            settings=runtime.settings.entry,
        ),
    )  # fmt: skip
    return waited_read(response, await send_and_await(runtime, decision, wait == "unlocked"))
