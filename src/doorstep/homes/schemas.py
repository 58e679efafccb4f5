"""Home, access point and hub bodies."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import available_timezones

from pydantic import Field, field_validator

from doorstep.schemas import Input, Output

_ZONES = frozenset(available_timezones())


class HomeCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=500)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    timezone: str = Field(min_length=1, max_length=64)
    geofence_m: float = Field(default=75.0, ge=10, le=1000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _ZONES:
            raise ValueError("unknown IANA time zone")
        return value


class AccessPointCreate(Input):
    slug: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1, max_length=200)


class CarrierAllow(Input):
    carrier_id: str = Field(min_length=1, max_length=32)


class HubClaimRequest(Input):
    claim_code: str = Field(min_length=12, max_length=20)
    public_key: str = Field(min_length=40, max_length=64, description="base64url Ed25519 key")
    seal_key: str | None = Field(
        default=None,
        min_length=40,
        max_length=64,
        description="base64url X25519 key keypad codes are sealed to (`protocol.seal`)",
    )


class AccessPointRead(Output):
    id: str
    slug: str
    name: str
    kind: str
    hub_id: str | None


class HubRead(Output):
    id: str
    online: bool
    epoch: int | None
    claimed_at: datetime | None
    status_at: datetime | None


class HomeRead(Output):
    id: str
    name: str
    address: str
    latitude: float
    longitude: float
    geofence_m: float
    timezone: str
    in_home_enabled: bool
    access_points: list[AccessPointRead] = Field(default_factory=list)
    hubs: list[HubRead] = Field(default_factory=list)


class HubCreated(Output):
    hub_id: str
    claim_code: str
    claim_expires_at: datetime


class BrokerRead(Output):
    host: str
    port: int
    username: str
    password: str
    # Over TLS (the hub verifies the broker's certificate and host name); `ca_pem`: the
    # one CA the hub is to trust for it, None: the hub's system CAs.
    tls: bool = False
    ca_pem: str | None = None


class HubEnrollment(Output):
    hub_id: str
    home_id: str
    broker: BrokerRead
    issuer_keys: dict[str, str]
    access_points: list[str]


class AuditRead(Output):
    seq: int
    ts: datetime
    actor: str
    action: str
    subject: str
    home_id: str | None
    data: dict[str, object]
    hash: str
