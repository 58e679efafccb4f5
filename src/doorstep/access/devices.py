"""Phone keys of couriers, guests and provider workers, for proof of possession
(`protocol.pop`). Served at `/v1/courier/device-keys` and, the same routes, at
`/v1/me/device-keys`.

The courier app makes a P-256 key with WebCrypto (non-extractable) right after sign-in
and registers its public JWK here. An entry request names the key; the grant carries it;
the hub unlocks only with its signature over the hub's challenge. A courier may hold a
few keys (phones); revoking one makes it unusable for the next request at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import Field
from sqlalchemy import LargeBinary, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from doorstep.accounts.service import Principal
from doorstep.audit.service import append
from doorstep.db import Base, UTCDateTime, new_id
from doorstep.deps import Entrant, RuntimeDep, SessionDep
from doorstep.errors import InvalidRequest, NotFound, TooManyRequests
from doorstep.protocol import pop
from doorstep.schemas import Input, Output

MAX_ACTIVE_KEYS = 5

router = APIRouter(prefix="/v1/courier", tags=["entries"])


class DeviceKey(Base):
    __tablename__ = "device_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    point: Mapped[bytes] = mapped_column(LargeBinary(33))  # SEC1 compressed P-256
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeviceKeyCreate(Input):
    jwk: dict[str, Any] = Field(description="the public P-256 key as WebCrypto exports it")
    label: str = Field(default="", max_length=100)


class DeviceKeyRead(Output):
    id: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


@router.post("/device-keys", status_code=201, response_model=DeviceKeyRead)
def register(
    body: DeviceKeyCreate, session: SessionDep, runtime: RuntimeDep, holder: Entrant
) -> object:
    try:
        point = pop.from_jwk(body.jwk)
    except pop.ProofError as exc:
        raise InvalidRequest(f"jwk: {exc}") from exc
    if len(_active(session, holder)) >= MAX_ACTIVE_KEYS:
        raise TooManyRequests(f"at most {MAX_ACTIVE_KEYS} phones; revoke one first")
    now = runtime.clock.now()
    key = DeviceKey(
        id=new_id("dk"), user_id=holder.id, point=point, label=body.label, created_at=now
    )
    session.add(key)
    session.flush()
    append(session, at=now, actor=holder.actor, action="device_key:registered", subject=key.id)
    return key


@router.get("/device-keys", response_model=list[DeviceKeyRead])
def list_keys(session: SessionDep, holder: Entrant) -> object:
    return session.scalars(
        select(DeviceKey).where(DeviceKey.user_id == holder.id).order_by(DeviceKey.created_at)
    ).all()


@router.delete("/device-keys/{key_id}", response_model=DeviceKeyRead)
def revoke(key_id: str, session: SessionDep, runtime: RuntimeDep, holder: Entrant) -> object:
    key = session.get(DeviceKey, key_id)
    if key is None or key.user_id != holder.id:
        raise NotFound("no such device key")
    if key.revoked_at is None:
        key.revoked_at = runtime.clock.now()
        append(
            session, at=key.revoked_at, actor=holder.actor, action="device_key:revoked",
            subject=key.id,
        )  # fmt: skip
    return key


def _active(session: Session, holder: Principal) -> list[DeviceKey]:
    return list(
        session.scalars(
            select(DeviceKey).where(DeviceKey.user_id == holder.id, DeviceKey.revoked_at.is_(None))
        )
    )


# The same routes for every kind of entrant, at a path that does not say "courier".
me_router = APIRouter(prefix="/v1/me", tags=["entries"])
for _route in list(router.routes):
    if isinstance(_route, APIRoute):
        me_router.add_api_route(
            _route.path.removeprefix("/v1/courier"), _route.endpoint,
            methods=sorted(_route.methods or ()), status_code=_route.status_code,
            response_model=_route.response_model,
        )  # fmt: skip
