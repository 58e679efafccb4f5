"""Bench data: one carrier, courier and resident made by the service's own functions, then
blocks of homes written straight into the database, one per request.

Every request needs its own home, access point, hub, delivery and package (an access
point holds one open entry at a time, and a successful unlock leaves the entry open), so
request number `n` uses the rows named by the printf formats below. The wrk script
builds its bodies from the same formats, so the two sides never disagree.

Rows are bulk-inserted after the migrations, bypassing the HTTP API and the audit chain:
setting up tens of thousands of homes through the API would take longer than the
benchmark. Hubs are seeded as enrolled and online; each hub's Ed25519 key is derived
from a per-run secret and its id, so the hub simulator can rebuild it without key files.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from doorstep import db
from doorstep.access.models import Entry
from doorstep.accounts import service as accounts
from doorstep.accounts.models import Role
from doorstep.broker.passwords import hash_password
from doorstep.deliveries.models import Delivery, DeliveryStatus, Package
from doorstep.homes.models import AccessPoint, Home, HomeCarrier, Hub

# Same lengths as the service's own ids (prefix + 16 characters), so the grant token the
# benchmark reports has the size a real one has.
HOME_FORMAT = "home-%016d"
HUB_FORMAT = "hub-%016d"
ACCESS_POINT_FORMAT = "ap-%016d"
DELIVERY_FORMAT = "dlv-%016d"
PACKAGE_FORMAT = "pkg-%016d"
BARCODE_FORMAT = "1Z%016d"
ACCESS_POINT_SLUG = "front"

LATITUDE, LONGITUDE = 51.5007, -0.1246
COURIER_ACCURACY_M = 8.0
PASSWORD = secrets.token_urlsafe(16)  # per run; the bench signs in within the run
COURIER_EMAIL = "courier@bench.doorstep.test"
OWNER_EMAIL = "owner@bench.doorstep.test"
INSERT_CHUNK = 5000


@dataclass(frozen=True)
class Block:
    """Request numbers `start` .. `start + count - 1`."""

    start: int
    count: int

    @property
    def stop(self) -> int:
        return self.start + self.count


@dataclass(frozen=True)
class Accounts:
    carrier_id: str
    courier_id: str
    owner_id: str


def entry_body_format() -> str:
    """The JSON body of request `n` as a printf format taking `n` twice."""
    return (
        f'{{"delivery_id":"{DELIVERY_FORMAT}","barcode":"{BARCODE_FORMAT}",'
        f'"latitude":{LATITUDE},"longitude":{LONGITUDE},"accuracy_m":{COURIER_ACCURACY_M},"nobody_answered":true}}'
    )


def hub_id(n: int) -> str:
    return HUB_FORMAT % n


def hub_key(secret: bytes, hub: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(secret + hub.encode()).digest())


def create_accounts(sessions: sessionmaker[Session], *, now: datetime) -> Accounts:
    """The carrier, its courier and the residents' stand-in, through the services."""
    with sessions() as session:
        carrier, _client, _secret = accounts.create_carrier(
            session, name="Bench Parcels", now=now, actor="system:bench"
        )
        owner = accounts.create_user(
            session,
            email=OWNER_EMAIL,
            name="Bench Resident",
            password=PASSWORD,
            role=Role.RESIDENT,
            now=now,
        )
        courier = accounts.create_user(
            session,
            email=COURIER_EMAIL,
            name="Bench Courier",
            password=PASSWORD,
            role=Role.COURIER,
            carrier_id=carrier.id,
            now=now,
        )
        session.commit()
        return Accounts(carrier.id, courier.id, owner.id)


class Seeder:
    """Writes blocks of homes, each ready for one courier entry."""

    def __init__(self, engine: Engine, accounts: Accounts, *, hub_secret: bytes) -> None:
        self._engine = engine
        self._accounts = accounts
        self._secret = hub_secret
        # Hubs use the service user on the bench broker; the column only has to be set.
        self._broker_hash = hash_password("bench hub password")

    def seed(self, block: Block, *, now: datetime) -> None:
        for start in range(block.start, block.stop, INSERT_CHUNK):
            chunk = range(start, min(start + INSERT_CHUNK, block.stop))
            tables = self._rows(chunk, now)
            with self._engine.begin() as connection:
                for model, rows in tables:
                    connection.execute(model.__table__.insert(), rows)

    def _rows(self, numbers: range, now: datetime) -> list[tuple[type[db.Base], list[dict]]]:
        homes, hubs, points, allowed, deliveries, packages = [], [], [], [], [], []
        for n in numbers:
            home, hub, point = HOME_FORMAT % n, HUB_FORMAT % n, ACCESS_POINT_FORMAT % n
            homes.append(
                {
                    "id": home,
                    "owner_id": self._accounts.owner_id,
                    "name": f"Bench home {n}",
                    "address": f"{n} Bench Street",
                    "latitude": LATITUDE,
                    "longitude": LONGITUDE,
                    "geofence_m": 75.0,
                    "timezone": "Europe/London",
                    "in_home_enabled": True,
                    "created_at": now,
                }
            )
            hubs.append(
                {
                    "id": hub,
                    "home_id": home,
                    "claim_digest": None,
                    "claim_expires_at": None,
                    "claimed_at": now,
                    "broker_password_hash": self._broker_hash,
                    "public_key": hub_key(self._secret, hub).public_key().public_bytes_raw(),
                    "online": True,
                    "epoch": 1,
                    "status_at": now,
                    "created_at": now,
                }
            )
            points.append(
                {
                    "id": point,
                    "home_id": home,
                    "hub_id": hub,
                    "slug": ACCESS_POINT_SLUG,
                    "name": "Front door",
                    "kind": "door",
                    "created_at": now,
                }
            )
            allowed.append(
                {"home_id": home, "carrier_id": self._accounts.carrier_id, "created_at": now}
            )
            deliveries.append(
                {
                    "id": DELIVERY_FORMAT % n,
                    "carrier_id": self._accounts.carrier_id,
                    "home_id": home,
                    "access_point_id": point,
                    "courier_id": self._accounts.courier_id,
                    "window_start": now - timedelta(hours=1),
                    "window_end": now + timedelta(hours=6),
                    "reference": "bench",
                    "status": DeliveryStatus.BOOKED,
                    "created_at": now,
                }
            )
            packages.append(
                {
                    "id": PACKAGE_FORMAT % n,
                    "delivery_id": DELIVERY_FORMAT % n,
                    "barcode": BARCODE_FORMAT % n,
                    "delivered_at": None,
                }
            )
        return [
            (Home, homes),
            (Hub, hubs),
            (AccessPoint, points),
            (HomeCarrier, allowed),
            (Delivery, deliveries),
            (Package, packages),
        ]


def entry_states(sessions: sessionmaker[Session]) -> dict[str, int]:
    """How many entries there are in each `state` or `state:reason`."""
    with sessions() as session:
        rows = session.execute(
            select(Entry.state, Entry.reason, func.count()).group_by(Entry.state, Entry.reason)
        ).all()
    return {f"{state}:{reason}" if reason else state: int(count) for state, reason, count in rows}
