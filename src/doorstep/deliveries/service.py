"""Carriers book deliveries to homes that accept them, for one of their own couriers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from doorstep.accounts.models import Role, User
from doorstep.accounts.service import Principal
from doorstep.audit import service as audit
from doorstep.db import new_id
from doorstep.deliveries.models import BookingKey, Delivery, DeliveryStatus, Package
from doorstep.errors import InvalidRequest, NotFound
from doorstep.homes.models import AccessPoint, Home, HomeCarrier
from doorstep.idempotency import KEPT_FOR, IdempotencyKeyReused
from doorstep.notify import outbox
from doorstep.sql import Tx

MAX_WINDOW = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    home_id: str
    courier_id: str
    window_start: datetime
    window_end: datetime
    barcodes: tuple[str, ...]
    access_point: str | None = None  # slug; the home's first access point by default
    reference: str = ""


def book(session: Session, *, carrier: Principal, data: NewDelivery, now: datetime) -> Delivery:
    home = session.get(Home, data.home_id)
    if home is None or session.get(HomeCarrier, (home.id, carrier.carrier_id)) is None:
        raise NotFound("no such home, or it does not accept deliveries from this carrier")
    courier = session.get(User, data.courier_id)
    if courier is None or courier.role != Role.COURIER or courier.carrier_id != carrier.carrier_id:
        raise NotFound("no such courier in this carrier")
    _check_window(data, now)
    point = _access_point(session, home.id, data.access_point)
    delivery = Delivery(
        id=new_id("dlv"),
        carrier_id=carrier.carrier_id,
        home_id=home.id,
        access_point_id=point.id,
        courier_id=courier.id,
        window_start=data.window_start,
        window_end=data.window_end,
        reference=data.reference,
        status=DeliveryStatus.BOOKED,
        created_at=now,
    )
    session.add(delivery)
    session.flush()  # the delivery row must exist before its packages reference it
    session.add_all(
        Package(id=new_id("pkg"), delivery_id=delivery.id, barcode=code)
        for code in dict.fromkeys(data.barcodes)
    )
    session.flush()
    audit.append(
        session,
        at=now,
        actor=carrier.actor,
        action="delivery:booked",
        subject=delivery.id,
        home_id=home.id,
        data={"packages": len(data.barcodes), "courier_id": courier.id},
    )
    owner = session.get(User, home.owner_id)
    if owner is not None:
        outbox.delivery_booked(
            Tx.of_session(session),
            delivery_id=delivery.id,
            owner_email=owner.email,
            home_id=home.id,
            home_name=home.name,
            timezone=home.timezone,
            window=(data.window_start, data.window_end),
            at=now,
        )
    return delivery


def book_once(
    session: Session,
    *,
    carrier: Principal,
    data: NewDelivery,
    now: datetime,
    key: str,
    request: str,
) -> tuple[Delivery, bool]:
    """`book`, unless the carrier booked with `key` in the last day: then that booking
    again, and True (nothing changes). `request` is the body's fingerprint
    (`idempotency.fingerprint`); the key's earlier request must have the same one, else
    `IdempotencyKeyReused`. A booking that fails leaves no key behind."""
    claim = _claim(session, carrier_id=carrier.carrier_id, key=key, request=request, now=now)
    if claim.delivery_id is not None:
        earlier = session.get(Delivery, claim.delivery_id)
        assert earlier is not None
        return earlier, True
    delivery = book(session, carrier=carrier, data=data, now=now)
    claim.delivery_id = delivery.id
    session.flush()
    return delivery, False


def _claim(
    session: Session, *, carrier_id: str | None, key: str, request: str, now: datetime
) -> BookingKey:
    """The carrier's live row for `key`: its earlier booking's, or one this transaction
    has just made (no delivery yet). Of two requests sent at once with one key, the
    second's insert waits for the first's transaction (on PostgreSQL at the primary key;
    on SQLite for the writers' turn), then finds its row: it answers as a repeat would."""
    assert carrier_id is not None
    session.execute(
        delete(BookingKey).where(
            BookingKey.carrier_id == carrier_id, BookingKey.created_at <= now - KEPT_FOR
        )
    )
    make = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        make(BookingKey)
        .values(carrier_id=carrier_id, key=key, request=request, created_at=now)
        .on_conflict_do_nothing(index_elements=[BookingKey.carrier_id, BookingKey.key])
    )
    claim = session.scalars(
        select(BookingKey).where(BookingKey.carrier_id == carrier_id, BookingKey.key == key)
    ).one()
    if claim.request != request:
        raise IdempotencyKeyReused()
    return claim


def _check_window(data: NewDelivery, now: datetime) -> None:
    if data.window_end <= data.window_start:
        raise InvalidRequest("window_end must be after window_start")
    if data.window_end - data.window_start > MAX_WINDOW:
        raise InvalidRequest("a delivery window may be at most 12 hours")
    if data.window_end <= now:
        raise InvalidRequest("the window has already ended")


def _access_point(session: Session, home_id: str, slug: str | None) -> AccessPoint:
    query = select(AccessPoint).where(AccessPoint.home_id == home_id)
    if slug is not None:
        query = query.where(AccessPoint.slug == slug)
    point = session.scalars(query.order_by(AccessPoint.created_at, AccessPoint.id)).first()
    if point is None:
        raise NotFound("the home has no such access point")
    return point


def get_for_carrier(session: Session, *, carrier: Principal, delivery_id: str) -> Delivery:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.carrier_id != carrier.carrier_id:
        raise NotFound("no such delivery")
    return delivery


def packages(session: Session, *, delivery_id: str) -> Sequence[Package]:
    return session.scalars(
        select(Package).where(Package.delivery_id == delivery_id).order_by(Package.barcode)
    ).all()


def stops_for(session: Session, *, courier: Principal) -> Sequence[Delivery]:
    return session.scalars(
        select(Delivery)
        .where(Delivery.courier_id == courier.id, Delivery.status == DeliveryStatus.BOOKED)
        .order_by(Delivery.window_start)
    ).all()
