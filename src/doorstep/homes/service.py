"""Homes, access points, hubs, enrollment and which carriers a home accepts.

Every function that takes a resident checks that the home is theirs; another resident's
home is "not found", never "forbidden", so ids do not leak.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep import security
from doorstep.accounts.models import Carrier
from doorstep.accounts.service import Principal
from doorstep.audit import service as audit
from doorstep.broker.passwords import hash_password as broker_hash
from doorstep.broker.passwords import new_password
from doorstep.db import new_id
from doorstep.errors import Conflict, NotAuthenticated, NotFound
from doorstep.homes.models import AccessPoint, Home, HomeCarrier, Hub

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


@dataclass(frozen=True, slots=True)
class NewHome:
    name: str
    address: str
    latitude: float
    longitude: float
    timezone: str
    geofence_m: float = 75.0


@dataclass(frozen=True, slots=True)
class HubClaim:
    hub: Hub
    claim_code: str


@dataclass(frozen=True, slots=True)
class PublicBroker:
    """The broker hubs are told at enrollment: where it is, whether over TLS, and the
    PEM of the one CA they are to trust for it (None: their system's CAs)."""

    host: str
    port: int
    tls: bool = False
    ca_pem: str | None = None


@dataclass(frozen=True, slots=True)
class Enrollment:
    hub: Hub
    broker_password: str
    access_points: list[AccessPoint]


def create_home(session: Session, *, owner: Principal, data: NewHome, now: datetime) -> Home:
    home = Home(
        id=new_id("home"),
        owner_id=owner.id,
        name=data.name,
        address=data.address,
        latitude=data.latitude,
        longitude=data.longitude,
        geofence_m=data.geofence_m,
        timezone=data.timezone,
        in_home_enabled=True,
        created_at=now,
    )
    session.add(home)
    session.flush()
    audit.append(
        session, at=now, actor=owner.actor, action="home:created", subject=home.id, home_id=home.id
    )
    return home


def owned_home(session: Session, *, owner: Principal, home_id: str) -> Home:
    home = session.get(Home, home_id)
    if home is None or home.owner_id != owner.id:
        raise NotFound("no such home")
    return home


def list_homes(session: Session, *, owner: Principal) -> Sequence[Home]:
    return session.scalars(select(Home).where(Home.owner_id == owner.id).order_by(Home.id)).all()


def add_access_point(
    session: Session, *, owner: Principal, home_id: str, slug: str, name: str, now: datetime
) -> AccessPoint:
    home = owned_home(session, owner=owner, home_id=home_id)
    if not SLUG.match(slug):
        raise Conflict("slug must be 1-32 lowercase letters, digits or dashes")
    if session.scalar(
        select(AccessPoint.id).where(AccessPoint.home_id == home.id, AccessPoint.slug == slug)
    ):
        raise Conflict(f"this home already has an access point {slug!r}")
    hub_id = session.scalar(select(Hub.id).where(Hub.home_id == home.id).limit(1))
    point = AccessPoint(
        id=new_id("ap"),
        home_id=home.id,
        hub_id=hub_id,
        slug=slug,
        name=name,
        kind="door",
        created_at=now,
    )
    session.add(point)
    session.flush()
    audit.append(
        session,
        at=now,
        actor=owner.actor,
        action="access_point:created",
        subject=point.id,
        home_id=home.id,
        data={"slug": slug},
    )
    return point


def access_points(session: Session, *, home_id: str) -> Sequence[AccessPoint]:
    return session.scalars(
        select(AccessPoint).where(AccessPoint.home_id == home_id).order_by(AccessPoint.slug)
    ).all()


def create_hub(
    session: Session, *, owner: Principal, home_id: str, now: datetime, claim_ttl: timedelta
) -> HubClaim:
    """A hub record and its one-time claim code (returned once; stored as a digest)."""
    home = owned_home(session, owner=owner, home_id=home_id)
    code = security.new_claim_code()
    hub = Hub(
        id=f"hub-{new_id('x')[2:]}",
        home_id=home.id,
        claim_digest=security.token_digest(code),
        claim_expires_at=now + claim_ttl,
        online=False,
        created_at=now,
    )
    session.add(hub)
    session.flush()
    for point in access_points(session, home_id=home.id):
        if point.hub_id is None:
            point.hub_id = hub.id
    audit.append(
        session, at=now, actor=owner.actor, action="hub:created", subject=hub.id, home_id=home.id
    )
    return HubClaim(hub, code)


def claim_hub(
    session: Session, *, code: str, public_key: bytes, now: datetime, seal_key: bytes | None = None
) -> Enrollment:
    """Redeem a claim code, once: the hub gets its broker password; its key is pinned,
    and its seal key (for keypad codes) kept."""
    digest = security.token_digest(security.normalise_claim_code(code))
    # FOR UPDATE: on PostgreSQL (READ COMMITTED) a second redemption racing this one
    # waits for it, then finds the code spent, instead of pinning its key over ours.
    hub = session.scalar(select(Hub).where(Hub.claim_digest == digest).with_for_update())
    if hub is None or hub.claim_expires_at is None or hub.claim_expires_at <= now:
        raise NotAuthenticated("claim code is unknown, used or expired")
    if len(public_key) != 32:
        raise Conflict("public_key must be a raw 32-byte Ed25519 key")
    if seal_key is not None and len(seal_key) != 32:
        raise Conflict("seal_key must be a raw 32-byte X25519 key")
    password = new_password()
    hub.claim_digest = None
    hub.claim_expires_at = None
    hub.claimed_at = now
    hub.public_key = public_key
    hub.seal_key = seal_key
    hub.broker_password_hash = broker_hash(password)
    audit.append(
        session,
        at=now,
        actor=f"hub:{hub.id}",
        action="hub:claimed",
        subject=hub.id,
        home_id=hub.home_id,
    )
    return Enrollment(hub, password, list(access_points(session, home_id=hub.home_id)))


def broker_credentials(session: Session) -> dict[str, str]:
    """hub id -> Mosquitto password hash, for every enrolled hub."""
    rows = session.execute(
        select(Hub.id, Hub.broker_password_hash).where(Hub.broker_password_hash.is_not(None))
    ).all()
    return {hub_id: str(password_hash) for hub_id, password_hash in rows}


def allow_carrier(
    session: Session, *, owner: Principal, home_id: str, carrier_id: str, now: datetime
) -> HomeCarrier:
    home = owned_home(session, owner=owner, home_id=home_id)
    if session.get(Carrier, carrier_id) is None:
        raise NotFound("no such carrier")
    existing = session.get(HomeCarrier, (home.id, carrier_id))
    if existing is not None:
        return existing
    link = HomeCarrier(home_id=home.id, carrier_id=carrier_id, created_at=now)
    session.add(link)
    audit.append(
        session,
        at=now,
        actor=owner.actor,
        action="home:carrier:allowed",
        subject=carrier_id,
        home_id=home.id,
    )
    return link


def hubs_of(session: Session, *, home_id: str) -> Sequence[Hub]:
    return session.scalars(select(Hub).where(Hub.home_id == home_id).order_by(Hub.id)).all()
