"""Nobody reaches a courier's stop, entry or phone keys through the courier app but that
courier: every page and JSON route `doorstep.courier_web` adds, read from the app's own
routes (so a new route is covered as soon as it exists), is walked with another
courier's session, a resident's token in the courier cookie, and none, against courier
A's stop and open entry; each answers "not found" (or sends to sign-in) with none of A's
data, and A's entry, keys and delivery are unchanged. And a courier's session reaches no
resident page."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from doorstep import demo
from doorstep.access.devices import DeviceKey
from doorstep.access.models import Entry
from doorstep.deliveries.models import Delivery
from doorstep.protocol import pop

from .support import PASSWORD, WebClient, new_email, session_token
from .test_isolation import _call, web_routes

KNOWN_PARAMETERS = {"delivery_id", "entry_id"}
COURIER_COOKIE = "doorstep_courier"
_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def courier_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the courier app mounted."""
    found = set()
    for route in iter_route_contexts(app.routes):
        module = getattr(route.endpoint, "__module__", "")
        if route.path and route.methods and module.startswith("doorstep.courier_web."):
            found |= {(method, route.path) for method in route.methods if method != "HEAD"}
    return sorted(found)


def courier_client(make: Callable[[], WebClient], token: str) -> WebClient:
    """A browser-like client carrying `token` as its courier session cookie."""
    client = make()
    client.http.cookies.set(COURIER_COOKIE, token, domain=client.http.base_url.host, path="/")
    return client


def app_csrf(client: WebClient) -> str:
    """The CSRF token the courier app page hands its script ("" without a session)."""
    match = _META_CSRF.search(client.get("/courier").text)
    return match.group(1) if match else ""


def _bodies(delivery_id: str, home: demo.Home, key_id: str | None) -> dict[str, Any]:
    jwk = pop.jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    return {
        "/courier/api/device-keys": {"jwk": jwk, "label": "another phone"},
        "/courier/api/entries": {
            "delivery_id": delivery_id,
            "barcode": "PKG-A1",
            "latitude": home.latitude,
            "longitude": home.longitude,
            "accuracy_m": 5,
            "nobody_answered": True,
            "device_key_id": key_id,
        },
        "/courier/api/entries/{entry_id}/unlock": {"proof": "A" * 86},
        "/courier/api/entries/{entry_id}/abort": {"reason": "pet"},
    }


def _send(client: WebClient, method: str, path: str, url: str, body: Any) -> httpx.Response:
    if method == "GET":
        return client.get(url)
    # The caller's own valid CSRF token where it has a session, so that what is tested is
    # the object check, not the CSRF check.
    token = app_csrf(client)
    if path.startswith("/courier/api/"):
        return client.http.post(url, json=body, headers={"x-csrf-token": token})
    return client.http.post(url, data={"csrf_token": token})


def courier_state(live: Any, entry_id: str, courier_id: str, delivery_id: str) -> Any:
    with live.sessions() as session:
        entry = session.get(Entry, entry_id)
        delivery = session.get(Delivery, delivery_id)
        assert entry is not None and delivery is not None
        keys = session.scalars(
            select(DeviceKey.id, DeviceKey.revoked_at).where(DeviceKey.user_id == courier_id)
        ).all()
        return (
            (entry.state, entry.abort_reason, entry.challenge, entry.device_key_id),
            delivery.status,
            sorted(keys),
        )


def test_every_courier_route_hides_another_couriers_stop_and_entry(
    live: Any,
    world: demo.World,
    installed: list[FastAPI],
    web_clients: Callable[[], WebClient],
) -> None:
    home = world.homes[0]
    a_id, a_api = world.couriers[0]
    delivery = demo.book(world, home, ["PKG-A1"])
    entry = demo.request_entry(a_api, delivery["id"], "PKG-A1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked"
    assert a_api.phone is not None and a_api.phone.key_id is not None
    marks = [entry["id"], delivery["id"], "1 Demo Street", "Home 1", "Casey Courier"]
    marks.append(a_api.phone.key_id)

    # A sees their own stop and entry, so not finding them elsewhere means something.
    a = courier_client(web_clients, session_token(live, "casey@parcelly.test"))
    own = a.get(f"/courier/stops/{delivery['id']}").text + a.get("/courier").text
    own += a.get(f"/courier/api/entries/{entry['id']}").text
    own += a.get("/courier/api/device-keys").text
    assert [mark for mark in marks if mark not in own] == []

    b_email = new_email("courier-b")
    world.carrier.call(
        "POST", "/v1/couriers", 201,
        json={"email": b_email, "name": "Bo Other", "password": PASSWORD},
    )  # fmt: skip
    with demo.Api.login(
        live.url, grant_type="password", username=b_email, password=PASSWORD
    ) as b_api:
        b_phone = demo.Phone()
        b_phone.register(b_api)  # so that B's request is refused for the stop, not the key
    routes = courier_routes(installed[0])
    assert ("GET", "/courier/api/entries/{entry_id}") in routes
    assert ("GET", "/courier/stops/{delivery_id}") in routes
    bodies = _bodies(delivery["id"], home, b_phone.key_id)
    before = courier_state(live, entry["id"], a_id, delivery["id"])
    callers: dict[str, Callable[[], WebClient]] = {
        "another courier": lambda: courier_client(web_clients, session_token(live, b_email)),
        "a resident": lambda: courier_client(
            web_clients, session_token(live, "resident1@doorstep.test")
        ),
        "nobody": web_clients,
    }
    for method, path in routes:
        parameters = set(re.findall(r"{(\w+)}", path))
        assert parameters <= KNOWN_PARAMETERS, f"teach this test the parameters of {path}"
        url = path.replace("{delivery_id}", delivery["id"]).replace("{entry_id}", entry["id"])
        for who, make in callers.items():
            response = _send(make(), method, path, url, bodies.get(path))  # a fresh session
            where = (who, method, path, response.status_code)
            assert response.status_code < 500, where
            if who == "another courier" and parameters:
                assert response.status_code == 404, where
            elif who != "another courier" and path.startswith("/courier/api/"):
                assert response.status_code == 401, where
            elif who != "another courier" and path != "/courier/signin":
                assert response.status_code == 303, where
                assert response.headers["location"] == "/courier/signin", where
            for mark in marks:
                assert mark not in response.text, (*where, mark)
                assert mark not in response.headers.get("location", ""), (*where, mark)
    # B's entry request for A's stop was recorded and denied like any other courier's.
    assert a_api.call("GET", f"/v1/entries/{entry['id']}")["state"] == "unlocked"
    assert courier_state(live, entry["id"], a_id, delivery["id"]) == before
    with live.sessions() as session:
        denied = session.scalars(
            select(Entry.reason).where(Entry.courier_id != a_id, Entry.state == "denied")
        ).all()
    assert denied == ["courier_not_assigned"]
    assert a.get(f"/courier/stops/{delivery['id']}").status_code == 200  # A is still in


def test_a_courier_session_reaches_no_resident_page(
    live: Any,
    world: demo.World,
    installed: list[FastAPI],
    web_clients: Callable[[], WebClient],
) -> None:
    home = world.homes[0]
    signed_in = web_clients()
    response = signed_in.post(
        "/courier/signin",
        {"email": "casey@parcelly.test", "password": PASSWORD},
        csrf_from="/courier/signin",
    )
    assert response.status_code == 303 and response.headers["location"] == "/courier"
    assert "doorstep_session" not in signed_in.http.cookies  # not a resident session
    assert signed_in.get("/courier").status_code == 200
    marks = [home.id, home.hub_id, "1 Demo Street", "Resident 1"]
    for method, path in web_routes(installed[0]):
        url = path.replace("{home_id}", home.id)
        response = _call(signed_in, method, url)
        where = (method, path, response.status_code)
        if method == "GET" and path in (
            "/signin",
            "/signup",
            "/password/forgot",
            "/password/reset",
        ):
            assert response.status_code == 200, where  # anyone may see these forms
        elif method == "GET" and path.endswith(("/live", "/stream")):
            assert response.status_code == 401, where
        elif method == "GET":
            assert response.status_code == 303, where
            assert response.headers["location"] in (
                "/signin",
                "/homes",
                "/signin?notice=code-expired",  # the code step, with no password step
            ), where
        else:
            assert response.status_code in (303, 403), where  # sign-in, or no valid form
        for mark in marks:
            assert mark not in response.text, (*where, mark)
    assert signed_in.get("/courier").status_code == 200  # the courier session still works
