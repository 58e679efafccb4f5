"""The courier app's defences, over HTTP: couriers only at its sign-in, its own cookie,
the CSRF header on every JSON write, sign-out ending the session, the pages' headers
(location and camera for this origin only), and no inline script or style."""

from __future__ import annotations

import re
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from doorstep import demo
from doorstep.accounts.service import resolve_token
from doorstep.protocol import pop
from doorstep.web import phone_session
from doorstep.web.security import CONTENT_SECURITY_POLICY

from .support import PASSWORD, WebClient, new_email, session_token, snapshot
from .test_courier_isolation import app_csrf, courier_client

COURIER = "casey@parcelly.test"


def _alert(html: str) -> str:
    match = re.search(r'<div class="alert" role="alert"><p>(.*?)</p>', html, re.S)
    assert match, "no alert on the page"
    return match.group(1)


def _sign_in(client: WebClient, email: str, password: str = PASSWORD) -> Any:
    data = {"email": email, "password": password}
    return client.post("/courier/signin", data, csrf_from="/courier/signin")


def test_only_couriers_sign_in_and_their_cookie_is_their_own(
    live: Any, world: demo.World, web_clients: Callable[[], WebClient]
) -> None:
    resident = web_clients()
    refused = _sign_in(resident, "resident1@doorstep.test")
    assert refused.status_code == 422
    assert _alert(refused.text) == "This app is for couriers."
    wrong = _sign_in(web_clients(), COURIER, "not the password")
    unknown = _sign_in(web_clients(), "nobody@parcelly.test", "not the password")
    assert wrong.status_code == unknown.status_code == 422
    assert _alert(wrong.text) == _alert(unknown.text) == "Wrong email or password."

    courier = web_clients()
    response = _sign_in(courier, COURIER)
    assert response.status_code == 303 and response.headers["location"] == "/courier"
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    cookie = jar["doorstep_courier"]
    assert cookie["httponly"] is True and cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/" and not cookie["domain"]
    assert cookie["max-age"] == str(live.settings.auth.token_ttl_seconds)
    assert "doorstep_session" not in jar
    # The resident app does not take a courier, by its cookie or its form.
    assert courier.get("/homes").headers["location"] == "/signin"
    resident_form = courier.post(
        "/signin", {"email": COURIER, "password": PASSWORD}, csrf_from="/signin"
    )
    assert "This web app is for residents." in resident_form.text


def test_json_writes_need_the_sessions_csrf_header_and_change_nothing_without(
    live: Any, world: demo.World, web_clients: Callable[[], WebClient]
) -> None:
    home = world.homes[0]
    delivery = demo.book(world, home, ["PKG-1"])
    courier = courier_client(web_clients, session_token(live, COURIER))
    other_email = new_email("courier-c")
    world.carrier.call(
        "POST", "/v1/couriers", 201,
        json={"email": other_email, "name": "Cy", "password": PASSWORD},
    )  # fmt: skip
    foreign = app_csrf(courier_client(web_clients, session_token(live, other_email)))
    jwk = pop.jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    writes = [
        ("/courier/api/device-keys", {"jwk": jwk, "label": "forged"}),
        (
            "/courier/api/entries",
            {
                "delivery_id": delivery["id"],
                "barcode": "PKG-1",
                "latitude": home.latitude,
                "longitude": home.longitude,
                "accuracy_m": 5,
                "nobody_answered": True,
            },
        ),
        ("/courier/api/entries/ent-0000000000000000/abort", {"reason": "pet"}),
    ]
    before = snapshot(live)
    for path, body in writes:
        for token in (None, "", "forged", foreign):
            headers = {} if token is None else {"x-csrf-token": token}
            response = courier.http.post(path, json=body, headers=headers)
            assert response.status_code == 403, (path, token, response.text)
            assert response.json()["error"]["code"] == "csrf_failed"
    assert snapshot(live) == before
    # With the page's own token the same write goes through.
    token = app_csrf(courier)
    registered = courier.http.post(writes[0][0], json=writes[0][1], headers={"x-csrf-token": token})
    assert registered.status_code == 201, registered.text
    assert registered.json()["id"] in {
        key["id"] for key in world.couriers[0][1].call("GET", "/v1/courier/device-keys")
    }
    bad = courier.http.post(
        writes[0][0], json={"jwk": {**jwk, "d": jwk["x"]}}, headers={"x-csrf-token": token}
    )
    assert bad.status_code == 422  # a private key is refused, as by the bearer API


def test_sign_out_ends_the_courier_session(
    live: Any,
    world: demo.World,
    web_clients: Callable[[], WebClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    courier = web_clients()
    _sign_in(courier, COURIER)
    assert courier.get("/courier").status_code == 200
    forged = courier.http.post("/courier/signout", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert courier.get("/courier").status_code == 200
    token = courier.http.cookies["doorstep_courier"]
    csrf = app_csrf(courier)
    lookups: list[str] = []

    def counted(session: Any, *, token: str, now: Any) -> Any:
        lookups.append(token)
        return resolve_token(session, token=token, now=now)

    monkeypatch.setattr(phone_session, "resolve_token", counted)
    response = courier.http.post("/courier/signout", data={"csrf_token": csrf})
    # The form's CSRF check and the route's courier are one session lookup, not two.
    assert lookups == [token]
    monkeypatch.undo()
    assert response.status_code == 303
    assert response.headers["location"] == "/courier/signin?notice=signed-out"
    again = courier_client(web_clients, token)  # the old cookie, kept by someone
    assert again.get("/courier").headers["location"] == "/courier/signin"
    assert again.get("/courier/api/device-keys").status_code == 401


def test_courier_pages_headers_and_no_inline_script_or_style(
    live: Any, world: demo.World, web_clients: Callable[[], WebClient]
) -> None:
    delivery = demo.book(world, world.homes[0], ["PKG-1"])
    courier = courier_client(web_clients, session_token(live, COURIER))
    paths = ["/courier/signin", "/courier", f"/courier/stops/{delivery['id']}"]
    for path in [*paths, "/courier/static/courier.js", "/courier/static/courier.css"]:
        response = courier.get(path)
        assert response.status_code == 200, path
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
    for path in paths:
        response = courier.get(path)
        assert response.headers["cache-control"] == "no-store"
        # The courier's own pages may ask for the location and the camera; no other origin.
        policy = response.headers["permissions-policy"]
        assert policy == "camera=(self), microphone=(), geolocation=(self)", path
        html = response.text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert " style=" not in html and "<style" not in html, path
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", html), path
    assert "geolocation=()" in courier.get("/signin").headers["permissions-policy"]
    missing = courier.get("/courier/stops/dlv-0000000000000000")
    assert missing.status_code == 404 and "No such stop." in missing.text
