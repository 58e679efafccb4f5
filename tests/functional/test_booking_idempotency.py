"""A carrier's booking sent again with the same `Idempotency-Key` (after a timeout on its
side, or twice at once) books one delivery and gets the same answer; the same key with
another body is refused; keys belong to their carrier and last a day; no key, no change."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from doorstep import demo
from doorstep.accounts.models import Role
from doorstep.accounts.service import create_user, resolve_token
from doorstep.audit.models import AuditEvent, AuditHead
from doorstep.clock import SystemClock
from doorstep.deliveries import service
from doorstep.deliveries.models import Delivery
from doorstep.deliveries.schemas import DeliveryCreate
from doorstep.idempotency import IdempotencyKeyReused, fingerprint
from doorstep.notify.models import OutboxMessage
from doorstep.schema import metadata
from polling import wait_until

PASSWORD = demo.PASSWORD


@dataclass
class Carrier:
    api: demo.Api
    id: str
    courier_id: str
    home_id: str

    def body(self, *barcodes: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "home_id": self.home_id,
            "courier_id": self.courier_id,
            "window_start": (now - timedelta(minutes=10)).isoformat(),
            "window_end": (now + timedelta(hours=2)).isoformat(),
            "packages": [{"barcode": code} for code in barcodes or ("PKG-1",)],
        }

    def book(self, body: dict[str, Any], key: str | bytes | None) -> httpx.Response:
        raw = key.encode() if isinstance(key, str) else key
        headers = {} if raw is None else {b"idempotency-key": raw}
        return self.api.http.post("/v1/deliveries", json=body, headers=headers)


@pytest.fixture
def make_carrier(live: Any) -> Iterator[Callable[[str], Carrier]]:
    with live.sessions() as session:
        create_user(
            session,
            email="op@doorstep.test",
            name="Operator",
            password=PASSWORD,
            role=Role.OPERATOR,
            now=SystemClock().now(),
        )
        session.commit()
    made: list[Carrier] = []
    with demo.Api.login(
        live.url, grant_type="password", username="op@doorstep.test", password=PASSWORD
    ) as operator:

        def make(name: str) -> Carrier:
            made.append(_carrier(live, operator, name))
            return made[-1]

        yield make
    for carrier in made:
        carrier.api.close()


def _carrier(live: Any, operator: demo.Api, name: str) -> Carrier:
    """A carrier with one courier and one home (no hub: booking needs none) that takes
    its deliveries."""
    made = operator.call("POST", "/v1/carriers", 201, json={"name": name})
    api = demo.Api.login(
        live.url,
        grant_type="client_credentials",
        client_id=made["client_id"],
        client_secret=made["client_secret"],
    )
    slug = name.lower()
    courier = api.call(
        "POST",
        "/v1/couriers",
        201,
        json={"email": f"c@{slug}.test", "name": "Casey", "password": PASSWORD},
    )
    with demo.Api(live.url) as anonymous:
        anonymous.call(
            "POST",
            "/v1/residents",
            201,
            json={"email": f"r@{slug}.test", "name": "Rae", "password": PASSWORD},
        )
    resident = demo.Api.login(
        live.url, grant_type="password", username=f"r@{slug}.test", password=PASSWORD
    )
    home = resident.call(
        "POST",
        "/v1/homes",
        201,
        json={
            "name": "Home",
            "address": "1 Demo Street",
            "latitude": 51.5,
            "longitude": -0.12,
            "timezone": "Europe/London",
        },
    )
    resident.call(
        "POST",
        f"/v1/homes/{home['id']}/access-points",
        201,
        json={"slug": "front", "name": "Front door"},
    )
    resident.call("POST", f"/v1/homes/{home['id']}/carriers", 201, json={"carrier_id": made["id"]})
    resident.close()
    return Carrier(api, made["id"], courier["id"], home["id"])


@pytest.fixture
def carrier(make_carrier: Callable[[str], Carrier]) -> Carrier:
    return make_carrier("Parcelly")


def _bookings(live: Any, carrier: Carrier) -> dict[str, int]:
    """What one booking adds: the delivery, its audit record, the resident's email."""
    with live.sessions() as session:
        deliveries = session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.carrier_id == carrier.id)
        )
        audited = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "delivery:booked", AuditEvent.home_id == carrier.home_id)
        )
        emails = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.event_type == "delivery.booked")
            .where(OutboxMessage.payload["home_id"].as_string() == carrier.home_id)
        )
    return {"deliveries": deliveries or 0, "audited": audited or 0, "emails": emails or 0}


def _snapshot(live: Any) -> dict[str, int]:
    with live.sessions() as session:
        counts = {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in metadata.sorted_tables
            if table.name not in {"access_tokens", "hub_events", "hub_streams"}
        }
        head = session.get(AuditHead, 1)
        counts["audit_head"] = head.seq if head else -1
    return counts


def test_a_repeat_with_the_same_key_answers_the_same_and_books_once(
    live: Any, carrier: Carrier
) -> None:
    body = carrier.body("PKG-1", "PKG-2")
    first = carrier.book(body, "order-42/attempt")
    # The carrier timed out waiting, and sends the same request again.
    again = carrier.book(dict(reversed(body.items())), "order-42/attempt")
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _bookings(live, carrier) == {"deliveries": 1, "audited": 1, "emails": 1}
    got = carrier.api.call("GET", f"/v1/deliveries/{first.json()['id']}")
    assert got == first.json()


def test_the_same_key_with_another_body_is_refused_and_changes_nothing(
    live: Any, carrier: Carrier
) -> None:
    first = carrier.book(carrier.body("PKG-1"), "order-43")
    assert first.status_code == 201, first.text
    before = _snapshot(live)
    other = carrier.book(carrier.body("PKG-9"), "order-43")
    assert other.status_code == 422, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in error["message"]
    assert _snapshot(live) == before
    assert carrier.api.call("GET", f"/v1/deliveries/{first.json()['id']}") == first.json()


def test_concurrent_requests_with_one_key_book_one_delivery(live: Any, carrier: Carrier) -> None:
    body, token = carrier.body("PKG-1"), carrier.api.http.headers["authorization"]
    start = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=live.url, headers={"authorization": token}, timeout=30) as http:
            start.wait()
            answers.append(
                http.post("/v1/deliveries", json=body, headers={"idempotency-key": "race-1"})
            )

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [answer.status_code for answer in answers] == [201] * 6, [a.text for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert _bookings(live, carrier) == {"deliveries": 1, "audited": 1, "emails": 1}


def test_a_request_that_waits_on_an_unfinished_booking_with_its_key_answers_as_a_repeat(
    live: Any, carrier: Carrier
) -> None:
    """The first request's transaction has claimed the key but not committed; the second
    waits for it (PostgreSQL: on the key's unique index; SQLite: for the writers' turn),
    then answers with the booking the first made."""
    body = carrier.body("PKG-1")
    token = carrier.api.http.headers["authorization"].removeprefix("Bearer ")
    answers: list[httpx.Response] = []
    with live.sessions() as first:
        principal = resolve_token(first, token=token, now=SystemClock().now())
        data = service.NewDelivery(
            home_id=carrier.home_id,
            courier_id=carrier.courier_id,
            window_start=datetime.fromisoformat(body["window_start"]),
            window_end=datetime.fromisoformat(body["window_end"]),
            barcodes=("PKG-1",),
        )
        booked, replayed = service.book_once(
            first,
            carrier=principal,
            data=data,
            now=SystemClock().now(),
            key="slow-1",
            request=_fingerprint(body),
        )
        assert not replayed
        second = threading.Thread(target=lambda: answers.append(carrier.book(body, "slow-1")))
        second.start()
        if live.settings.database_url.startswith("postgresql"):
            wait_until(lambda: _waiting_on_a_lock(live), 15, "the second request's lock wait")
        first.commit()
    second.join(30)
    assert [answer.status_code for answer in answers] == [201], [a.text for a in answers]
    assert answers[0].json()["id"] == booked.id
    assert _bookings(live, carrier) == {"deliveries": 1, "audited": 1, "emails": 1}


def _fingerprint(body: dict[str, Any]) -> str:
    return fingerprint(DeliveryCreate.model_validate(body))


def _waiting_on_a_lock(live: Any) -> bool:
    with live.sessions() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


def test_keys_belong_to_their_carrier(
    live: Any, make_carrier: Callable[[str], Carrier], carrier: Carrier
) -> None:
    other = make_carrier("Boxfast")
    body = carrier.body("PKG-1")
    mine = carrier.book(body, "shared-key")
    theirs = other.book(other.body("PKG-7"), "shared-key")
    assert mine.status_code == theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["carrier_id"] == other.id
    assert "idempotent-replayed" not in theirs.headers
    assert carrier.book(body, "shared-key").json() == mine.json()
    assert _bookings(live, carrier)["deliveries"] == _bookings(live, other)["deliveries"] == 1


@pytest.mark.parametrize(
    "key", ["", "k" * 256, "caf\u00e9".encode(), b"tab\there"], ids=["empty", "long", "utf8", "tab"]
)
def test_a_malformed_key_is_refused_and_changes_nothing(
    live: Any, carrier: Carrier, key: str | bytes
) -> None:
    before = _snapshot(live)
    answer = carrier.book(carrier.body("PKG-1"), key)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_idempotency_key"
    assert "Idempotency-Key" in error["message"]
    assert _snapshot(live) == before


def test_the_longest_key_is_accepted(live: Any, carrier: Carrier) -> None:
    key, body = "~ !" + "k" * 252, carrier.body("PKG-1")
    first = carrier.book(body, key)
    assert first.status_code == 201, first.text
    assert carrier.book(body, key).json() == first.json()
    assert _bookings(live, carrier)["deliveries"] == 1


def test_without_a_key_each_request_books(live: Any, carrier: Carrier) -> None:
    body = carrier.body("PKG-1")
    answers = [carrier.book(body, None), carrier.book(body, None)]
    assert [answer.status_code for answer in answers] == [201, 201]
    assert answers[0].json()["id"] != answers[1].json()["id"]
    assert _bookings(live, carrier) == {"deliveries": 2, "audited": 2, "emails": 2}


def test_a_key_is_kept_for_a_day_then_forgotten(live: Any, carrier: Carrier) -> None:
    first = carrier.book(carrier.body("PKG-1"), "daily-1")
    assert first.status_code == 201, first.text
    body = carrier.body("PKG-2")  # tomorrow's, so that its window has not ended then
    for edge in ("window_start", "window_end"):
        body[edge] = (datetime.fromisoformat(body[edge]) + timedelta(days=1)).isoformat()
    token = carrier.api.http.headers["authorization"].removeprefix("Bearer ")
    with live.sessions() as session:
        principal = resolve_token(session, token=token, now=SystemClock().now())
    data = service.NewDelivery(
        home_id=carrier.home_id,
        courier_id=carrier.courier_id,
        window_start=datetime.fromisoformat(body["window_start"]),
        window_end=datetime.fromisoformat(body["window_end"]),
        barcodes=("PKG-2",),
    )
    later = SystemClock().now() + timedelta(hours=23, minutes=59)
    with live.sessions() as session, pytest.raises(IdempotencyKeyReused):
        service.book_once(
            session,
            carrier=principal,
            data=data,
            now=later,
            key="daily-1",
            request=_fingerprint(body),
        )
    next_day = SystemClock().now() + timedelta(hours=24)
    with live.sessions() as session:
        booked, replayed = service.book_once(
            session,
            carrier=principal,
            data=data,
            now=next_day,
            key="daily-1",
            request=_fingerprint(body),
        )
        session.commit()
    assert not replayed
    assert booked.id != first.json()["id"]
    assert _bookings(live, carrier)["deliveries"] == 2


def test_the_api_description_documents_the_key(live: Any) -> None:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    parameters = spec["paths"]["/v1/deliveries"]["post"]["parameters"]
    [key] = [p for p in parameters if p["name"].lower() == "idempotency-key"]
    assert key["in"] == "header"
    assert not key["required"]
    assert "24 hours" in key["description"]
