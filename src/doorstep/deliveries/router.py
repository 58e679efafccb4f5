"""Carrier booking routes and the courier's list of stops."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from doorstep.deliveries import service
from doorstep.deliveries.models import Delivery
from doorstep.deliveries.schemas import DeliveryCreate, DeliveryRead, PackageRead, StopRead
from doorstep.deps import CarrierClient, Courier, RuntimeDep, SessionDep
from doorstep.homes.models import Home
from doorstep.idempotency import REPLAYED_HEADER, IdempotencyKey, fingerprint

router = APIRouter(prefix="/v1", tags=["deliveries"])


def _read(session: Session, delivery: Delivery) -> DeliveryRead:
    packages = service.packages(session, delivery_id=delivery.id)
    return DeliveryRead.model_validate(delivery).model_copy(
        update={"packages": [PackageRead.model_validate(p) for p in packages]}
    )


@router.post("/deliveries", status_code=201, response_model=DeliveryRead)
def book(
    body: DeliveryCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    carrier: CarrierClient,
    key: IdempotencyKey,
    response: Response,
) -> object:
    """Book a delivery. Sent again with the same `Idempotency-Key` and body (within 24
    hours, by the same carrier), it answers with the delivery booked the first time, as
    it is now, and books nothing."""
    data = service.NewDelivery(
        home_id=body.home_id,
        courier_id=body.courier_id,
        window_start=body.window_start,
        window_end=body.window_end,
        barcodes=tuple(p.barcode for p in body.packages),
        access_point=body.access_point,
        reference=body.reference,
    )
    now = runtime.clock.now()
    if key is None:
        return _read(session, service.book(session, carrier=carrier, data=data, now=now))
    delivery, replayed = service.book_once(
        session, carrier=carrier, data=data, now=now, key=key, request=fingerprint(body)
    )
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return _read(session, delivery)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryRead)
def get_delivery(delivery_id: str, session: SessionDep, carrier: CarrierClient) -> object:
    return _read(
        session, service.get_for_carrier(session, carrier=carrier, delivery_id=delivery_id)
    )


@router.get("/courier/stops", response_model=list[StopRead])
def stops(session: SessionDep, courier: Courier) -> object:
    result = []
    for delivery in service.stops_for(session, courier=courier):
        home = session.get(Home, delivery.home_id)
        assert home is not None
        result.append(
            StopRead(
                delivery_id=delivery.id,
                home_name=home.name,
                address=home.address,
                latitude=home.latitude,
                longitude=home.longitude,
                window_start=delivery.window_start,
                window_end=delivery.window_end,
                barcodes=[p.barcode for p in service.packages(session, delivery_id=delivery.id)],
                pet_notes=home.pet_notes,
                placement_notes=home.placement_notes,
                approval_mode=home.approval_mode,
            )
        )
    return result
