"""Nobody reaches a home that is not theirs through the web app: every page, form, JSON and
event-stream route `doorstep.web` adds, read from the app's own routes (so a new route is
covered as soon as it exists), is walked with another resident's session, a courier's,
and none, against resident A's home, A's entry awaiting approval and A's closed days;
each answers "not found" (or sends to sign-in) with none of A's data, and A's home, its
preferences, closures and entries are unchanged."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from doorstep import demo
from doorstep.access.models import Entry
from doorstep.audit.models import AuditEvent
from doorstep.grants.models import AccessGrant
from doorstep.homes.models import AccessPoint, Home, HomeClosure, Hub

from .support import PASSWORD, WebClient, new_email, session_token

FAR_AWAY = (48.8584, 2.2945)
STREAM_FIRST_BYTES_SECONDS = 10


def web_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the web package mounted, included routers and all."""
    found = set()
    for route in iter_route_contexts(app.routes):
        module = getattr(route.endpoint, "__module__", "")
        if route.path and route.methods and module.startswith("doorstep.web."):
            found |= {(method, route.path) for method in route.methods if method != "HEAD"}
    return sorted(found)


def home_state(live: Any, home_id: str) -> tuple[Any, ...]:
    with live.sessions() as session:
        home = session.get(Home, home_id)
        assert home is not None

        def count(model: Any, column: Any) -> int:
            return (
                session.scalar(select(func.count()).select_from(model).where(column == home_id))
                or 0
            )

        return (
            (home.name, home.address, home.latitude, home.longitude, home.timezone),
            (
                home.in_home_enabled,
                home.allowed_weekdays,
                home.approval_mode,
                home.approval_timeout_seconds,
                home.pet_notes,
                home.placement_notes,
            ),
            count(HomeClosure, HomeClosure.home_id),
            sorted(session.scalars(select(Entry.state).where(Entry.home_id == home_id))),
            count(Hub, Hub.home_id),
            count(AccessPoint, AccessPoint.home_id),
            count(Entry, Entry.home_id),
            count(AuditEvent, AuditEvent.home_id),
            [g.revoked_at for g in session.scalars(
                select(AccessGrant).where(AccessGrant.home_id == home_id))],
        )  # fmt: skip


@dataclass
class _Answer:
    status_code: int
    text: str
    headers: httpx.Headers


def _call(client: WebClient, method: str, path: str) -> Any:
    if method == "GET" and path.endswith("/stream"):
        return _first_bytes(client, path)
    if method == "GET":
        return client.get(path)
    # A valid CSRF token of the caller's own session where it has one, so that what is
    # tested is the object check, not the CSRF check.
    token_page = client.get("/account/security")
    data = {}
    if token_page.status_code == 200:
        match = re.search(r'name="csrf_token" value="([^"]+)"', token_page.text)
        assert match
        data["csrf_token"] = match.group(1)
    # A real attempt at each form: approve, revoke, enable, save whatever the route does.
    data |= {
        "decision": "approve",
        "kind": "blackout",
        "first_day": "2030-01-01",
        "last_day": "2030-01-02",
        "in_home_enabled": "on",
        "approval_mode": "auto",
        "approval_timeout_seconds": "60",
        "password": PASSWORD,
        "next": "/homes",
    }
    return client.http.post(path, data=data)


def _first_bytes(client: WebClient, path: str) -> _Answer:
    """An event stream never ends by itself: the status, headers and its first chunk."""
    with client.http.stream("GET", path, timeout=STREAM_FIRST_BYTES_SECONDS) as response:
        text = ""
        if response.status_code == 200:
            text = next(response.iter_text())
        else:
            text = response.read().decode()
        return _Answer(response.status_code, text, response.headers)


def test_every_web_route_hides_another_residents_home(
    live: Any,
    world: demo.World,
    installed: list[FastAPI],
    web_clients: Callable[[], WebClient],
) -> None:
    home = world.homes[0]  # resident A's, with an online hub
    courier = world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-A1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-A1", *FAR_AWAY)
    # A asks to approve each entry: one waits for A's answer; A also closed some days.
    current = home.resident.call("GET", f"/v1/homes/{home.id}/preferences")
    home.resident.call(
        "PUT",
        f"/v1/homes/{home.id}/preferences",
        json={**current, "approval_mode": "ask", "pet_notes": "Rex the dog"},
    )
    waiting = demo.book(world, home, ["PKG-A2"])
    asked = demo.request_entry(courier, waiting["id"], "PKG-A2", home.latitude, home.longitude)
    assert asked["state"] == "awaiting_approval"
    closure = home.resident.call(
        "POST",
        f"/v1/homes/{home.id}/closures",
        201,
        json={"kind": "vacation", "first_day": "2031-05-01", "last_day": "2031-05-09"},
    )
    guest = home.resident.call("POST", f"/v1/homes/{home.id}/grants", 201, json={
        "access_point": "front", "label": "Guest Gwendolyn", "kind": "always",
        "email": "gwendolyn@example.org"})["grant"]  # fmt: skip
    marks = [
        "Guest Gwendolyn",
        home.id,
        home.hub_id,
        "1 Demo Street",
        entry["id"],
        "PKG-A1",
        "Casey Courier",
        asked["id"],
        "PKG-A2",
        "Rex the dog",
        closure["id"],
    ]
    # A's objects, by the name routes give their ids; a route naming another parameter
    # fails the walk below until it is taught here.
    of_a = {"home_id": home.id, "entry_id": asked["id"], "closure_id": closure["id"],
            "grant_id": guest["id"], "slug": "front",
            "clip_id": "0" * 32}  # fmt: skip
    owner = web_clients().use_session(session_token(live, "resident1@doorstep.test"))
    a_pages = "".join(
        owner.get(f"/homes/{home.id}{page}").text
        for page in ("", "/hub", "/activity", "/preferences", "/guests")
    )
    a_pages += owner.get("/approvals").text
    # A sees each of them, so not finding them elsewhere means something.
    assert [mark for mark in marks if mark not in a_pages] == []

    b_email = new_email("neighbour")
    b = web_clients()
    b.sign_up(b_email)
    b.sign_in(b_email)
    b.add_home("Neighbour's flat")

    routes = web_routes(installed[0])
    assert {
        ("GET", "/homes/{home_id}"),
        ("GET", "/homes/{home_id}/live"),
        ("GET", "/homes/{home_id}/stream"),
        ("GET", "/homes/{home_id}/preferences"),
        ("POST", "/homes/{home_id}/closures/{closure_id}/remove"),
        ("POST", "/entries/{entry_id}/approval"),
        ("GET", "/approvals/stream"),
        ("POST", "/account/totp/disable"),
    } <= set(routes)
    before = home_state(live, home.id)
    callers: dict[str, Callable[[], WebClient]] = {
        "another resident": lambda: web_clients().use_session(session_token(live, b_email)),
        "the courier": lambda: web_clients().use_session(
            session_token(live, "casey@parcelly.test")
        ),
        "nobody": web_clients,
    }
    for method, path in routes:
        parameters = set(re.findall(r"{(\w+)}", path))
        assert parameters <= set(of_a), f"teach this test the parameters of {path}"
        url = path.format(**{name: of_a[name] for name in parameters})
        for who, make in callers.items():
            response = _call(make(), method, url)  # a fresh session each time
            where = (who, method, path, response.status_code)
            assert response.status_code < 500, where
            if parameters and who == "another resident":
                assert response.status_code == 404, where
            elif parameters and path.endswith(("/live", "/stream")):
                assert response.status_code == 401, where
            elif parameters:
                assert response.status_code == 303, where
                assert response.headers["location"] == "/signin", where
            for mark in marks:
                assert mark not in response.text, (*where, mark)
                assert mark not in response.headers.get("location", ""), (*where, mark)
    assert home_state(live, home.id) == before
    assert owner.get(f"/homes/{home.id}").status_code == 200  # A is still signed in
