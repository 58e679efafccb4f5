"""A carrier's webhook endpoint: set it (getting a fresh signing secret), read it, turn it off.

The secret is shown once, in the answer to the PUT that made it; a later PUT rotates it.
It is stored sealed (`sealing`), never in plain.
The audit log records the URL without its query or fragment (`targets.redacted`): a
receiver may take a token of its own there.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi import APIRouter
from pydantic import Field, field_validator
from sqlalchemy import select

from doorstep.audit.service import append
from doorstep.db import new_id
from doorstep.deps import CarrierClient, RuntimeDep, SessionDep
from doorstep.errors import InvalidRequest, NotFound
from doorstep.notify import sealing
from doorstep.notify.models import WebhookEndpoint
from doorstep.notify.signing import new_secret
from doorstep.notify.targets import redacted
from doorstep.schemas import Input, Output

router = APIRouter(prefix="/v1/carrier", tags=["webhooks"])


class WebhookSet(Input):
    url: str = Field(min_length=8, max_length=2000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials")
        return value


class WebhookRead(Output):
    id: str
    url: str
    active: bool


class WebhookCreated(WebhookRead):
    secret: str = Field(description="HMAC-SHA256 signing secret; shown only this once")


@router.put("/webhook", response_model=WebhookCreated)
def set_webhook(
    body: WebhookSet, session: SessionDep, runtime: RuntimeDep, carrier: CarrierClient
) -> object:
    """Point the carrier's entry events at `url`, with a new signing secret."""
    check_target(body.url, allow_private=runtime.settings.notify.allow_private_targets)
    if runtime.settings.environment == "production" and not body.url.startswith("https://"):
        raise InvalidRequest("url: webhooks must use https in production")
    endpoint = _endpoint(session, carrier.carrier_id)
    now = runtime.clock.now()
    if endpoint is None:
        endpoint = WebhookEndpoint(id=new_id("whk"), carrier_id=carrier.carrier_id, created_at=now)
        session.add(endpoint)
    secret = new_secret()
    endpoint.url, endpoint.active = body.url, True
    endpoint.secret = sealing.seal(runtime.webhook_key, endpoint.id, secret)
    session.flush()
    append(
        session,
        at=now,
        actor=carrier.actor,
        action="webhook:set",
        subject=endpoint.id,
        data={"url": redacted(body.url)},
    )
    return WebhookCreated(id=endpoint.id, url=endpoint.url, active=endpoint.active, secret=secret)


@router.get("/webhook", response_model=WebhookRead)
def get_webhook(session: SessionDep, carrier: CarrierClient) -> object:
    endpoint = _endpoint(session, carrier.carrier_id)
    if endpoint is None:
        raise NotFound("no webhook endpoint is set")
    return endpoint


@router.delete("/webhook", response_model=WebhookRead)
def disable_webhook(session: SessionDep, runtime: RuntimeDep, carrier: CarrierClient) -> object:
    """Stop sending; messages still queued for it fail instead of going out."""
    endpoint = _endpoint(session, carrier.carrier_id)
    if endpoint is None:
        raise NotFound("no webhook endpoint is set")
    endpoint.active = False
    append(
        session,
        at=runtime.clock.now(),
        actor=carrier.actor,
        action="webhook:disabled",
        subject=endpoint.id,
    )
    return endpoint


def _endpoint(session: SessionDep, carrier_id: str | None) -> WebhookEndpoint | None:
    return session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.carrier_id == carrier_id)
    ).one_or_none()


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse an address literal that is not public (names are checked at send time)."""
    host = urlsplit(url).hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" and not allow_private:
            raise InvalidRequest("url: must not point at this machine") from None
        return
    if not ip.is_global and not allow_private:
        raise InvalidRequest("url: must be a public address")
