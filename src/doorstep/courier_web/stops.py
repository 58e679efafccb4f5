"""The courier's in-home stops for today, as the app lists them, and the open entry of a
stop (to pick up again after a reload).

Built from `deliveries.service.stops_for`, the same list `GET /v1/courier/stops` answers,
narrowed to deliveries whose window touches today in the home's time zone. A stop that is
not the courier's (another courier's, delivered, cancelled) is "not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.access.models import OPEN_STATES, Entry
from doorstep.accounts.service import Principal
from doorstep.deliveries import service as deliveries
from doorstep.deliveries.models import Delivery
from doorstep.errors import NotFound
from doorstep.homes.models import ApprovalMode, Home


@dataclass(frozen=True, slots=True)
class Stop:
    delivery_id: str
    home_name: str
    address: str
    timezone: str
    window_start: datetime
    window_end: datetime
    parcels: int
    pet_notes: str
    placement_notes: str
    resident_approves: bool  # approval mode "ask": each entry waits for the resident

    @property
    def has_notes(self) -> bool:
        return bool(self.pet_notes or self.placement_notes or self.resident_approves)


def today(session: Session, *, courier: Principal, now: datetime) -> list[Stop]:
    """The courier's booked stops whose window touches today, earliest window first."""
    stops = [
        _stop(session, delivery) for delivery in deliveries.stops_for(session, courier=courier)
    ]
    return [stop for stop in stops if _touches_today(stop, now)]


def one(session: Session, *, courier: Principal, delivery_id: str) -> Stop:
    """One of the courier's booked stops; anything else is "not found"."""
    for delivery in deliveries.stops_for(session, courier=courier):
        if delivery.id == delivery_id:
            return _stop(session, delivery)
    raise NotFound("no such stop")


def open_entry(session: Session, *, courier: Principal, delivery_id: str) -> str | None:
    """The courier's entry at this stop that has not ended yet, if there is one."""
    return session.scalar(
        select(Entry.id)
        .where(
            Entry.courier_id == courier.id,
            Entry.delivery_id == delivery_id,
            Entry.state.in_([str(state) for state in OPEN_STATES]),
        )
        .order_by(Entry.created_at.desc())
        .limit(1)
    )


def _stop(session: Session, delivery: Delivery) -> Stop:
    home = session.get(Home, delivery.home_id)
    assert home is not None  # a delivery's home is a foreign key
    return Stop(
        delivery_id=delivery.id,
        home_name=home.name,
        address=home.address,
        timezone=home.timezone,
        window_start=delivery.window_start,
        window_end=delivery.window_end,
        parcels=len(deliveries.packages(session, delivery_id=delivery.id)),
        pet_notes=home.pet_notes,
        placement_notes=home.placement_notes,
        resident_approves=home.approval_mode == ApprovalMode.ASK,
    )


def _touches_today(stop: Stop, now: datetime) -> bool:
    zone = ZoneInfo(stop.timezone)
    day = now.astimezone(zone).date()
    return (
        stop.window_start.astimezone(zone).date() <= day <= stop.window_end.astimezone(zone).date()
    )
