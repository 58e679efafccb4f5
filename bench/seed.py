"""Bench data: one carrier and resident made by the service's own functions, a fleet of
couriers with their bearer tokens, then blocks of homes written straight into the
database, one per request.

The fleet is large enough that each courier stays inside the service's default attempt
limits (10 requests a minute): a real deployment at thousands of requests a second is
thousands of couriers, each asking a few times an hour, and the per-courier limit checks
cost what they cost there (each count stops at its limit). Request `n` is made by
courier `n % COURIERS`, who is the courier its delivery is assigned to.

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

from doorstep import db, security
from doorstep.access.models import Entry
from doorstep.accounts import service as accounts
from doorstep.accounts.models import AccessToken, PrincipalKind, Role, User
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
COURIER_EMAIL_FORMAT = "courier-%05d@bench.doorstep.test"
# 16,384 couriers: at 3,000 requests a second each makes about 11 a minute across the
# scenarios' runs, which are minutes apart, so no run meets the default per-minute limit.
COURIERS = 16384
TOKEN_TTL = timedelta(hours=12)
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
    owner_id: str
    courier_ids: tuple[str, ...]
    # Courier i's bearer token; tokens[n % COURIERS] makes request n.
    tokens: tuple[str, ...]

    def courier_of(self, n: int) -> str:
        return self.courier_ids[n % len(self.courier_ids)]

    def token_of(self, n: int) -> str:
        return self.tokens[n % len(self.tokens)]


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


def create_accounts(
    engine: Engine, sessions: sessionmaker[Session], *, now: datetime, couriers: int = COURIERS
) -> Accounts:
    """The carrier and the residents' stand-in through the services; the first courier
    through them too, then the rest of the fleet as copies of its row (same password
    hash: hashing 16,384 passwords with argon2 would take minutes) with a bearer token
    each, minted as `accounts.issue_token` mints them."""
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
        first = accounts.create_user(
            session,
            email=COURIER_EMAIL,
            name="Bench Courier",
            password=PASSWORD,
            role=Role.COURIER,
            carrier_id=carrier.id,
            now=now,
        )
        session.commit()
        template = {column.key: getattr(first, column.key) for column in User.__table__.columns}
        carrier_id, owner_id, first_id = carrier.id, owner.id, first.id
    ids = [first_id] + [f"usr-bench{n:011d}" for n in range(1, couriers)]
    users = [
        template | {"id": courier_id, "email": COURIER_EMAIL_FORMAT % n, "name": f"Courier {n}"}
        for n, courier_id in enumerate(ids)
        if n
    ]
    tokens = [security.new_token() for _ in ids]
    rows = [
        {
            "digest": security.token_digest(token),
            "principal_kind": PrincipalKind.USER,
            "principal_id": courier_id,
            "expires_at": now + TOKEN_TTL,
            "created_at": now,
        }
        for courier_id, token in zip(ids, tokens, strict=True)
    ]
    with engine.begin() as connection:
        for start in range(0, len(users), INSERT_CHUNK):
            connection.execute(User.__table__.insert(), users[start : start + INSERT_CHUNK])
        for start in range(0, len(rows), INSERT_CHUNK):
            connection.execute(AccessToken.__table__.insert(), rows[start : start + INSERT_CHUNK])
    return Accounts(carrier_id, owner_id, tuple(ids), tuple(tokens))


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
                    "courier_id": self._accounts.courier_of(n),
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
