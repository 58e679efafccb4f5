"""Nobody reaches a home that is not theirs through the web app: every page and JSON route
`doorstep.web` adds, read from the app's own routes (so a new route is covered as soon as
it exists), is walked with another resident's session, a courier's, and none, against
resident A's home; each answers "not found" (or sends to sign-in) with none of A's data,
and A's home is unchanged."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from doorstep import demo
from doorstep.access.models import Entry
from doorstep.audit.models import AuditEvent
from doorstep.homes.models import AccessPoint, Home, Hub

from .support import WebClient, new_email, session_token

FAR_AWAY = (48.8584, 2.2945)
KNOWN_PARAMETERS = {"home_id"}


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
            count(Hub, Hub.home_id),
            count(AccessPoint, AccessPoint.home_id),
            count(Entry, Entry.home_id),
            count(AuditEvent, AuditEvent.home_id),
        )


def _call(client: WebClient, method: str, path: str) -> Any:
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
    return client.http.post(path, data=data)


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
    marks = [home.id, home.hub_id, "1 Demo Street", entry["id"], "PKG-A1", "Casey Courier"]
    owner = web_clients().use_session(session_token(live, "resident1@doorstep.test"))
    a_pages = "".join(
        owner.get(f"/homes/{home.id}{page}").text for page in ("", "/hub", "/activity")
    )
    # A sees each of them, so not finding them elsewhere means something.
    assert [mark for mark in marks if mark not in a_pages] == []

    b_email = new_email("neighbour")
    b = web_clients()
    b.sign_up(b_email)
    b.sign_in(b_email)
    b.add_home("Neighbour's flat")

    routes = web_routes(installed[0])
    assert ("GET", "/homes/{home_id}") in routes and ("GET", "/homes/{home_id}/live") in routes
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
        assert parameters <= KNOWN_PARAMETERS, f"teach this test the parameters of {path}"
        url = path.replace("{home_id}", home.id)
        for who, make in callers.items():
            response = _call(make(), method, url)  # a fresh session each time
            where = (who, method, path, response.status_code)
            assert response.status_code < 500, where
            if parameters and who == "another resident":
                assert response.status_code == 404, where
            elif parameters and path.endswith("/live"):
                assert response.status_code == 401, where
            elif parameters:
                assert response.status_code == 303, where
                assert response.headers["location"] == "/signin", where
            for mark in marks:
                assert mark not in response.text, (*where, mark)
                assert mark not in response.headers.get("location", ""), (*where, mark)
    assert home_state(live, home.id) == before
    assert owner.get(f"/homes/{home.id}").status_code == 200  # A is still signed in
