"""Sign-up, tokens (OAuth2 password and client-credentials grants), carriers, couriers."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from doorstep.accounts import service
from doorstep.accounts.models import PrincipalKind, Role
from doorstep.accounts.schemas import (
    CarrierCreate,
    CarrierCreated,
    CourierCreate,
    ResidentCreate,
    TokenRead,
    UserRead,
)
from doorstep.deps import CarrierClient, CourierManager, Operator, RuntimeDep, SessionDep
from doorstep.errors import InvalidRequest, TooManyRequests

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.post("/residents", status_code=201, response_model=UserRead)
def sign_up(body: ResidentCreate, session: SessionDep, runtime: RuntimeDep) -> object:
    return service.create_user(
        session,
        email=body.email,
        name=body.name,
        password=body.password,
        role=Role.RESIDENT,
        now=runtime.clock.now(),
    )


@router.post("/auth/token", response_model=TokenRead)
async def token(request: Request, runtime: RuntimeDep) -> object:
    """OAuth2 token endpoint: `grant_type=password` (people) or `client_credentials`
    (carrier API clients), form-encoded as RFC 6749 says, or as JSON."""
    form = await _read_form(request)
    key = f"{request.client.host if request.client else '-'}"
    if not runtime.login_limiter.allow(key, runtime.clock.timestamp()):
        raise TooManyRequests("too many sign-in attempts; wait a minute")
    ttl = timedelta(seconds=runtime.settings.auth.token_ttl_seconds)
    with runtime.sessions() as session:
        kind, principal_id = _authenticate(session, form)
        issued = service.issue_token(
            session, kind=kind, principal_id=principal_id, now=runtime.clock.now(), ttl=ttl
        )
        session.commit()
    return TokenRead(access_token=issued.access_token, expires_in=int(ttl.total_seconds()))


def _authenticate(session: Session, form: dict[str, str]) -> tuple[PrincipalKind, str]:
    grant = form.get("grant_type")
    if grant == "password":
        user = service.authenticate_password(
            session, email=_field(form, "username"), password=_field(form, "password")
        )
        return PrincipalKind.USER, user.id
    if grant == "client_credentials":
        client = service.authenticate_client(
            session, client_id=_field(form, "client_id"), secret=_field(form, "client_secret")
        )
        return PrincipalKind.CLIENT, client.id
    raise InvalidRequest("grant_type must be 'password' or 'client_credentials'")


def _field(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} is required")
    return value


async def _read_form(request: Request) -> dict[str, str]:
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            data = orjson.loads(body)
            if not isinstance(data, dict):
                raise InvalidRequest("body must be a JSON object")
            return {k: v for k, v in data.items() if isinstance(v, str)}
        return dict(parse_qsl(body.decode("utf-8"), strict_parsing=bool(body)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("body is not a valid form or JSON object") from exc


@router.post("/carriers", status_code=201, response_model=CarrierCreated)
def create_carrier(
    body: CarrierCreate, session: SessionDep, runtime: RuntimeDep, operator: Operator
) -> object:
    carrier, client, secret = service.create_carrier(
        session, name=body.name, now=runtime.clock.now(), actor=operator.actor
    )
    return CarrierCreated(
        id=carrier.id, name=carrier.name, client_id=client.id, client_secret=secret
    )


@router.post("/couriers", status_code=201, response_model=UserRead)
def create_courier(
    body: CourierCreate, session: SessionDep, runtime: RuntimeDep, carrier: CarrierClient
) -> object:
    return service.create_user(
        session,
        email=body.email,
        name=body.name,
        password=body.password,
        role=Role.COURIER,
        carrier_id=carrier.carrier_id,
        now=runtime.clock.now(),
        actor=carrier.actor,
    )


@router.post("/couriers/{courier_id}/suspend", response_model=UserRead)
def suspend_courier(
    courier_id: str, session: SessionDep, runtime: RuntimeDep, manager: CourierManager
) -> object:
    """Stop a courier at once: the next entry request is denied (`courier_inactive`) and
    recorded. The courier's carrier or an operator may do this."""
    return service.set_courier_active(
        session, manager=manager, courier_id=courier_id, active=False, now=runtime.clock.now()
    )


@router.post("/couriers/{courier_id}/reinstate", response_model=UserRead)
def reinstate_courier(
    courier_id: str, session: SessionDep, runtime: RuntimeDep, manager: CourierManager
) -> object:
    return service.set_courier_active(
        session, manager=manager, courier_id=courier_id, active=True, now=runtime.clock.now()
    )
