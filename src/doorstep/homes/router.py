"""Routes for residents' homes, access points, hubs, carriers and audit; hub enrollment."""

from __future__ import annotations

import binascii
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.audit.models import AuditEvent
from doorstep.db import after_commit
from doorstep.deps import Resident, RuntimeDep, SessionDep
from doorstep.errors import InvalidRequest, TooManyRequests
from doorstep.homes import service
from doorstep.homes.models import Home
from doorstep.homes.schemas import (
    AccessPointCreate,
    AccessPointRead,
    AuditRead,
    BrokerRead,
    CarrierAllow,
    HomeCreate,
    HomeRead,
    HubClaimRequest,
    HubCreated,
    HubEnrollment,
    HubRead,
)
from doorstep.protocol.messages import b64decode, b64encode

router = APIRouter(prefix="/v1", tags=["homes"])


def _read(session: Session, home: Home) -> HomeRead:
    points = service.access_points(session, home_id=home.id)
    hubs = service.hubs_of(session, home_id=home.id)
    return HomeRead.model_validate(home).model_copy(
        update={
            "access_points": [AccessPointRead.model_validate(p) for p in points],
            "hubs": [HubRead.model_validate(h) for h in hubs],
        }
    )


@router.post("/homes", status_code=201, response_model=HomeRead)
def create_home(
    body: HomeCreate, session: SessionDep, runtime: RuntimeDep, owner: Resident
) -> object:
    data = service.NewHome(**body.model_dump())
    home = service.create_home(session, owner=owner, data=data, now=runtime.clock.now())
    return _read(session, home)


@router.get("/homes", response_model=list[HomeRead])
def list_homes(session: SessionDep, owner: Resident) -> object:
    return [_read(session, home) for home in service.list_homes(session, owner=owner)]


@router.get("/homes/{home_id}", response_model=HomeRead)
def get_home(home_id: str, session: SessionDep, owner: Resident) -> object:
    return _read(session, service.owned_home(session, owner=owner, home_id=home_id))


@router.post("/homes/{home_id}/access-points", status_code=201, response_model=AccessPointRead)
def add_access_point(
    home_id: str, body: AccessPointCreate, session: SessionDep, runtime: RuntimeDep, owner: Resident
) -> object:
    return service.add_access_point(
        session,
        owner=owner,
        home_id=home_id,
        slug=body.slug,
        name=body.name,
        now=runtime.clock.now(),
    )


@router.post("/homes/{home_id}/hubs", status_code=201, response_model=HubCreated)
def create_hub(home_id: str, session: SessionDep, runtime: RuntimeDep, owner: Resident) -> object:
    ttl = timedelta(seconds=runtime.settings.auth.claim_code_ttl_seconds)
    claim = service.create_hub(
        session, owner=owner, home_id=home_id, now=runtime.clock.now(), claim_ttl=ttl
    )
    assert claim.hub.claim_expires_at is not None
    return HubCreated(
        hub_id=claim.hub.id,
        claim_code=claim.claim_code,
        claim_expires_at=claim.hub.claim_expires_at,
    )


@router.post("/homes/{home_id}/carriers", status_code=201)
def allow_carrier(
    home_id: str, body: CarrierAllow, session: SessionDep, runtime: RuntimeDep, owner: Resident
) -> dict[str, str]:
    service.allow_carrier(
        session, owner=owner, home_id=home_id, carrier_id=body.carrier_id, now=runtime.clock.now()
    )
    return {"home_id": home_id, "carrier_id": body.carrier_id}


@router.get("/homes/{home_id}/audit", response_model=list[AuditRead])
def home_audit(
    home_id: str,
    session: SessionDep,
    owner: Resident,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> object:
    home = service.owned_home(session, owner=owner, home_id=home_id)
    return session.scalars(
        select(AuditEvent)
        .where(AuditEvent.home_id == home.id, AuditEvent.seq > after)
        .order_by(AuditEvent.seq)
        .limit(limit)
    ).all()


@router.post("/hubs/claim", response_model=HubEnrollment)
def claim_hub(
    body: HubClaimRequest, request: Request, session: SessionDep, runtime: RuntimeDep
) -> object:
    """A hub redeems its claim code once and receives its broker credentials (and the
    broker's TLS CA, if it has one of its own) and the issuer keys to pin. No bearer
    token: the claim code is the credential.

    The keys are read once the claim is committed: then either the service's raise of
    versions for changed keys (`grants.rotation`) saw the hub enrolled, and sends it a
    document with them, or it did not, and the keys it swapped in before are those read
    here. Read before the commit, they could be the old ones while the raise missed the
    hub (PostgreSQL, READ COMMITTED), which was then counted as trusting keys it was
    never sent."""
    key = request.client.host if request.client else "-"
    if not runtime.claim_limiter.allow(key, runtime.clock.timestamp()):
        raise TooManyRequests("too many claim attempts; wait a minute")
    try:
        public_key = b64decode(body.public_key)
        seal_key = b64decode(body.seal_key) if body.seal_key is not None else None
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("public_key and seal_key must be base64url") from exc
    enrollment = service.claim_hub(
        session, code=body.claim_code, public_key=public_key, seal_key=seal_key,
        now=runtime.clock.now(),
    )  # fmt: skip
    after_commit(session, runtime.on_hub_enrolled)
    session.commit()
    keys = runtime.keys  # after the commit: see above
    broker = runtime.broker_public
    return HubEnrollment(
        hub_id=enrollment.hub.id,
        home_id=enrollment.hub.home_id,
        broker=BrokerRead(
            host=broker.host,
            port=broker.port,
            username=enrollment.hub.id,
            password=enrollment.broker_password,
            tls=broker.tls,
            ca_pem=broker.ca_pem,
        ),
        issuer_keys={kid: b64encode(raw) for kid, raw in keys.public.items()},
        access_points=[p.slug for p in enrollment.access_points],
    )
