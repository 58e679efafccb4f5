"""A resident of one home can neither see nor change anything of another home through any
`/v1` route: every route with a path parameter, read from the app itself, is called with
the other resident's bearer token and resident A's ids. Each answer is a refusal (401,
403 or 404), shows none of A's data, and A's home is unchanged afterwards.

A route naming a parameter this test does not know fails the walk until it is taught;
the hub's own routes (signed by the hub's key, not a resident's token) are walked with
the resident's token too and must refuse it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from doorstep import demo
from doorstep.access.models import Entry
from doorstep.audit.models import AuditEvent
from doorstep.grants.models import AccessGrant
from doorstep.homes.models import Home, HomeClosure

FAR_AWAY = (48.85, 2.35)


@pytest.fixture
def installed() -> list[FastAPI]:
    return []


@pytest.fixture
def extend_app(installed: list[FastAPI]) -> Callable[[FastAPI], None]:
    return installed.append


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    found = set()
    for route in iter_route_contexts(app.routes):
        if route.path and route.path.startswith("/v1/") and "{" in route.path and route.methods:
            found |= {(method, route.path) for method in route.methods if method != "HEAD"}
    return sorted(found)


def state_of(live: Any, home_id: str) -> tuple[Any, ...]:
    with live.sessions() as session:
        home = session.get(Home, home_id)
        assert home is not None

        def count(model: Any, column: Any) -> int:
            query = select(func.count()).select_from(model).where(column == home_id)
            return int(session.scalar(query) or 0)

        return (
            (home.name, home.in_home_enabled, home.approval_mode, home.pet_notes),
            count(HomeClosure, HomeClosure.home_id),
            count(Entry, Entry.home_id),
            count(AuditEvent, AuditEvent.home_id),
            sorted(
                (g.id, g.revoked_at is None, g.grantee_id)
                for g in session.scalars(select(AccessGrant).where(AccessGrant.home_id == home_id))
            ),
        )


def test_every_api_route_refuses_another_residents_token(
    live: Any, world: demo.World, installed: list[FastAPI], stack: ExitStack
) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    url = world.service.url
    delivery = demo.book(world, home, ["PKG-ISO"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-ISO", *FAR_AWAY)
    closure = home.resident.call("POST", f"/v1/homes/{home.id}/closures", 201, json={
        "kind": "vacation", "first_day": "2031-05-01", "last_day": "2031-05-09"})  # fmt: skip
    grant = home.resident.call("POST", f"/v1/homes/{home.id}/grants", 201, json={
        "access_point": "front", "label": "Guest Gwendolyn", "kind": "always",
        "email": "gwendolyn@example.org"})["grant"]  # fmt: skip
    with demo.Api(url) as anonymous:
        provider = anonymous.call("POST", "/v1/providers", 201, json={
            "name": "Sparkle Isolation", "admin_email": "boss@iso.test", "admin_name": "Boss",
            "admin_password": "admin-password-1"})  # fmt: skip
    admin = stack.enter_context(demo.Api.login(url, grant_type="password",
                                               username="boss@iso.test",
                                               password="admin-password-1"))  # fmt: skip
    worker = admin.call("POST", f"/v1/providers/{provider['id']}/workers", 201,
                        json={"email": "wes@iso.test", "name": "Wes"})  # fmt: skip
    appointment = home.resident.call("POST", f"/v1/homes/{home.id}/appointments", 201, json={
        "provider_id": provider["id"], "access_point": "front",
        "starts_at": "2031-01-01T09:00:00", "ends_at": "2031-01-01T12:00:00"})  # fmt: skip
    assert courier.phone is not None and courier.phone.key_id is not None
    of_a = {
        "home_id": home.id, "entry_id": entry["id"], "closure_id": closure["id"],
        "grant_id": grant["id"], "delivery_id": delivery["id"], "slug": "front",
        "key_id": courier.phone.key_id, "provider_id": provider["id"],
        "worker_id": worker["user_id"], "appointment_id": appointment["id"],
        "courier_id": world.couriers[0][0], "access_point": "front",
        # No clip exists in this world (no camera); test_clips walks the clip routes
        # with a real clip. An id of the right shape still exercises the refusal.
        "clip_id": "clp-0000000000000000", "part": "video",
    }  # fmt: skip
    marks = [home.id, "Guest Gwendolyn", "gwendolyn@example.org", "1 Demo Street", "PKG-ISO"]

    email, password = "neighbour@example.org", "neighbour-password"
    with demo.Api(url) as anonymous:
        anonymous.call("POST", "/v1/residents", 201,
                       json={"email": email, "name": "N", "password": password})  # fmt: skip
    other = stack.enter_context(
        demo.Api.login(url, grant_type="password", username=email, password=password)
    )
    other.call("POST", "/v1/homes", 201, json={"name": "Elsewhere", "address": "2 Road",
               "latitude": 48.0, "longitude": 2.0, "timezone": "Europe/Paris"})  # fmt: skip

    before = state_of(live, home.id)
    routes = api_routes(installed[0])
    assert ("DELETE", "/v1/grants/{grant_id}") in routes
    assert len(routes) >= 40
    # A body each route accepts, so that what refuses is the object check, not validation.
    prefs = home.resident.call("GET", f"/v1/homes/{home.id}/preferences")
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/v1/entries/{entry_id}/approval"): {"decision": "approve"},
        ("POST", "/v1/homes/{home_id}/access-points"): {"slug": "back", "name": "Back"},
        ("POST", "/v1/homes/{home_id}/appointments"): {
            "provider_id": provider["id"], "access_point": "front",
            "starts_at": "2031-02-01T09:00:00", "ends_at": "2031-02-01T10:00:00"},
        ("POST", "/v1/homes/{home_id}/carriers"): {"carrier_id": world.carrier_id},
        ("POST", "/v1/homes/{home_id}/closures"): {
            "kind": "vacation", "first_day": "2032-01-01", "last_day": "2032-01-02"},
        ("POST", "/v1/homes/{home_id}/doors/{slug}/unlock"): {"password": password},
        ("POST", "/v1/homes/{home_id}/grants"): {
            "access_point": "front", "label": "X", "kind": "always", "email": "x@example.org"},
        ("POST", "/v1/homes/{home_id}/revoke-everything"): {"password": password},
        ("PUT", "/v1/homes/{home_id}/preferences"): {**prefs, "pet_notes": "changed"},
        ("PUT", "/v1/homes/{home_id}/video-settings"): {"retention_days": 1},
        ("POST", "/v1/providers/{provider_id}/workers"): {"email": "x@iso.test", "name": "X"},
        ("POST", "/v1/appointments/{appointment_id}/assign"): {"worker_id": worker["user_id"]},
        ("POST", "/v1/courier/entries/{entry_id}/abort"): {"reason": "other"},
        ("POST", "/v1/courier/entries/{entry_id}/unlock"): {"proof": "A" * 86},
        ("POST", "/v1/visits/{entry_id}/unlock"): {"proof": "A" * 86},
    }  # fmt: skip
    queries = {"/v1/live/{entry_id}": {"viewer": "x", "exp": 4102444800, "sig": "A" * 43}}
    for method, path in routes:
        parameters = set(re.findall(r"{(\w+)}", path))
        assert parameters <= set(of_a), f"teach this test the parameters of {path}"
        target = path.format(**{name: of_a[name] for name in parameters})
        response = other.http.request(
            method, target, json=bodies.get((method, path)), params=queries.get(path), timeout=10
        )
        where = (method, path, response.status_code, response.text[:200])
        assert response.status_code in (401, 403, 404), where
        for mark in marks:
            assert mark not in response.text, (*where, mark)
    assert state_of(live, home.id) == before
