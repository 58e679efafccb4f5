"""Bad input to every endpoint: a 4xx with a clear error body, and nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from doorstep import demo
from doorstep.audit.models import AuditHead
from doorstep.schema import metadata

HUGE = "x" * 70_000


def _snapshot(live: Any) -> dict[str, int]:
    with live.sessions() as session:
        # Tokens are issued by sign-ins, the hub's own telemetry arrives on its own
        # schedule, and the guess limiters count every attempt, bad ones too (as they did
        # in memory before they moved to the database); everything else is what an HTTP
        # request could have changed.
        skipped = {"access_tokens", "hub_events", "hub_streams", "guess_hits"}
        counts = {
            t.name: session.scalar(select(func.count()).select_from(t)) or 0
            for t in metadata.sorted_tables
            if t.name not in skipped
        }
        head = session.get(AuditHead, 1)
        counts["audit_head"] = head.seq if head else -1
        return counts


def _cases(world: demo.World) -> list[tuple[str, demo.Api, str, str, Any, int]]:
    home = world.homes[0]
    carrier_id = world.carrier_id
    courier_id, courier = world.couriers[0]
    resident, carrier, operator = home.resident, world.carrier, world.operator
    good_delivery = {
        "home_id": home.id,
        "courier_id": courier_id,
        "window_start": "2030-01-01T10:00:00+00:00",
        "window_end": "2030-01-01T12:00:00+00:00",
        "packages": [{"barcode": "B-1"}],
    }
    return [
        (
            "signup wrong type",
            resident,
            "POST",
            "/v1/residents",
            {"email": 5, "name": "x", "password": "y" * 12},
            422,
        ),
        ("signup missing", resident, "POST", "/v1/residents", {"email": "a@b.c"}, 422),
        (
            "signup short password",
            resident,
            "POST",
            "/v1/residents",
            {"email": "a@b.c", "name": "x", "password": "short"},
            422,
        ),
        (
            "signup unknown field",
            resident,
            "POST",
            "/v1/residents",
            {"email": "a@b.c", "name": "x", "password": "y" * 12, "role": "operator"},
            422,
        ),
        ("token bad grant", resident, "POST", "/v1/auth/token", {"grant_type": "magic"}, 422),
        (
            "home wrong type",
            resident,
            "POST",
            "/v1/homes",
            {"name": "H", "address": "A", "latitude": "north", "longitude": 0, "timezone": "UTC"},
            422,
        ),
        (
            "home bad zone",
            resident,
            "POST",
            "/v1/homes",
            {
                "name": "H",
                "address": "A",
                "latitude": 1,
                "longitude": 0,
                "timezone": "Mars/Olympus",
            },
            422,
        ),
        (
            "home out of range",
            resident,
            "POST",
            "/v1/homes",
            {"name": "H", "address": "A", "latitude": 91, "longitude": 0, "timezone": "UTC"},
            422,
        ),
        ("home unknown", resident, "GET", "/v1/homes/home-0000000000000000", None, 404),
        (
            "access point unknown home",
            resident,
            "POST",
            "/v1/homes/home-0000000000000000/access-points",
            {"slug": "back", "name": "B"},
            404,
        ),
        (
            "access point bad slug",
            resident,
            "POST",
            f"/v1/homes/{home.id}/access-points",
            {"slug": "Back Door!", "name": "B"},
            422,
        ),
        (
            "access point duplicate",
            resident,
            "POST",
            f"/v1/homes/{home.id}/access-points",
            {"slug": "front", "name": "again"},
            409,
        ),
        ("hub unknown home", resident, "POST", "/v1/homes/home-0000000000000000/hubs", None, 404),
        (
            "carrier allow unknown",
            resident,
            "POST",
            f"/v1/homes/{home.id}/carriers",
            {"carrier_id": "car-0000000000000000"},
            404,
        ),
        (
            "claim bad code",
            resident,
            "POST",
            "/v1/hubs/claim",
            {"claim_code": "AAAA-BBBB-CCCC", "public_key": "A" * 43},
            401,
        ),
        ("claim missing", resident, "POST", "/v1/hubs/claim", {}, 422),
        ("carrier wrong type", operator, "POST", "/v1/carriers", {"name": ["x"]}, 422),
        ("courier missing", carrier, "POST", "/v1/couriers", {"name": "x"}, 422),
        (
            "delivery naive time",
            carrier,
            "POST",
            "/v1/deliveries",
            {**good_delivery, "window_start": "2030-01-01T10:00:00"},
            422,
        ),
        (
            "delivery no packages",
            carrier,
            "POST",
            "/v1/deliveries",
            {**good_delivery, "packages": []},
            422,
        ),
        (
            "delivery bad barcode",
            carrier,
            "POST",
            "/v1/deliveries",
            {**good_delivery, "packages": [{"barcode": "a b"}]},
            422,
        ),
        (
            "delivery reversed window",
            carrier,
            "POST",
            "/v1/deliveries",
            {**good_delivery, "window_end": "2030-01-01T09:00:00+00:00"},
            422,
        ),
        (
            "delivery unknown home",
            carrier,
            "POST",
            "/v1/deliveries",
            {**good_delivery, "home_id": "home-0000000000000000"},
            404,
        ),
        (
            "delivery unknown courier",
            carrier,
            "POST",
            "/v1/deliveries",
            {**good_delivery, "courier_id": "usr-0000000000000000"},
            404,
        ),
        ("delivery unknown", carrier, "GET", "/v1/deliveries/dlv-0000000000000000", None, 404),
        (
            "entry wrong types",
            courier,
            "POST",
            "/v1/courier/entries",
            {"delivery_id": 1, "barcode": None, "latitude": "x", "longitude": 0, "accuracy_m": 5},
            422,
        ),
        ("entry missing", courier, "POST", "/v1/courier/entries", {"barcode": "B-1"}, 422),
        (
            "entry bad wait",
            courier,
            "POST",
            "/v1/courier/entries?wait=forever",
            {"delivery_id": "d", "barcode": "b", "latitude": 0, "longitude": 0, "accuracy_m": 1},
            422,
        ),
        ("entry unknown", courier, "GET", "/v1/entries/ent-0000000000000000", None, 404),
        (
            "entry by a resident",
            resident,
            "POST",
            "/v1/courier/entries",
            {
                "delivery_id": "d",
                "barcode": "b",
                "latitude": 0,
                "longitude": 0,
                "accuracy_m": 1,
                "nobody_answered": True,
            },
            403,
        ),
        (
            "carrier of another",
            operator,
            "POST",
            "/v1/couriers",
            {"email": "x@y.z", "name": "n", "password": "p" * 12},
            403,
        ),
        ("no such route", resident, "GET", "/v1/nothing-here", None, 404),
        (
            "carrier id typo",
            resident,
            "POST",
            f"/v1/homes/{home.id}/carriers",
            {"carrier": carrier_id},
            422,
        ),
    ]


def test_bad_input_is_refused_and_changes_nothing(live: Any, world: demo.World) -> None:
    before = _snapshot(live)
    for name, api, method, path, body, status in _cases(world):
        response = (
            api.http.request(method, path, json=body)
            if body is not None
            else api.http.request(method, path)
        )
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        error = response.json()["error"]
        assert error["code"] and error["message"], name
    assert _snapshot(live) == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/residents",
        "/v1/homes",
        "/v1/courier/entries",
        "/v1/deliveries",
        "/v1/hubs/claim",
        "/v1/auth/token",
    ],
)
def test_huge_bodies_are_refused(live: Any, world: demo.World, path: str) -> None:
    before = _snapshot(live)
    response = world.homes[0].resident.http.post(
        path, content=HUGE.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert _snapshot(live) == before


def test_not_json_and_no_token(live: Any, world: demo.World) -> None:
    resident = world.homes[0].resident
    response = resident.http.post(
        "/v1/homes", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    with demo.Api(live.url) as anonymous:
        response = anonymous.http.get("/v1/homes")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
        response = anonymous.http.get("/v1/homes", headers={"authorization": "Bearer nope"})
        assert response.status_code == 401
        body = {
            "delivery_id": "d",
            "barcode": "b",
            "latitude": 0,
            "longitude": 0,
            "accuracy_m": 1,
            "nobody_answered": True,
        }
        response = anonymous.http.post("/v1/courier/entries", json=body)
        assert response.status_code == 401
        response = anonymous.http.post(
            "/v1/courier/entries", json=body, headers={"authorization": "Bearer nope"}
        )
        assert response.status_code == 401


@pytest.mark.parametrize("path", ["/v1/residents", "/v1/courier/entries", "/v1/auth/token"])
def test_huge_bodies_sent_without_a_length_are_refused_too(
    live: Any, world: demo.World, path: str
) -> None:
    """Chunked, with no Content-Length to refuse up front: still a 413 with the error
    body, not a server error, and nothing changes."""
    before = _snapshot(live)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(HUGE), 8192):
            yield HUGE[start : start + 8192].encode()

    response = world.homes[0].resident.http.post(
        path, content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert _snapshot(live) == before
