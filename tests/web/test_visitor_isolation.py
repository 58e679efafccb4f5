"""Nobody reaches a guest's grant, entry or phone keys, nor a provider's people and
appointments, through the guest and provider app but their own: every page and JSON
route `doorstep.visitor_web` adds, read from the app's own routes (so a new route is
covered as soon as it exists), is walked against guest A's grant and open entry and
provider P's worker and appointment, by another guest, by P's (non-admin) worker, by a
resident's token in the guest cookie, and by nobody; each answers "not found" (or sends
to sign-in) with none of A's or P's data, and nothing of A's or P's changes. Every
change needs the session's CSRF token; the guest cookie is flagged as the resident's; a
grant that is the guest's but revoked is refused by the engine, with its reason."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from doorstep import demo
from doorstep.access.devices import DeviceKey
from doorstep.access.models import Entry
from doorstep.accounts.models import User
from doorstep.grants.models import AccessGrant, ProviderMember
from doorstep.protocol import pop
from doorstep.protocol.codes import COURIER_ADVICE, Reason
from doorstep.settings import NotifySettings
from functional.conftest import Mailbox

from .support import WebClient, session_token
from .visitors import accept, book, invite_guest, mailed_link, sign_up_provider, smtp_server

GUEST_COOKIE = "doorstep_guest"
KNOWN_PARAMETERS = {"grant_id", "entry_id", "provider_id", "worker_id", "appointment_id"}
ANYONE = {("GET", "/guest/signin"), ("GET", "/guest/accept")}
NO_SESSION_FORMS = {("POST", "/guest/signin"), ("POST", "/guest/accept")}
_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture(name="mailbox")
def _mailbox() -> Iterator[tuple[Mailbox, int]]:
    yield from smtp_server()


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


def visitor_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the guest and provider app mounted."""
    found = set()
    for route in iter_route_contexts(app.routes):
        module = getattr(route.endpoint, "__module__", "")
        if route.path and route.methods and module.startswith("doorstep.visitor_web."):
            found |= {(method, route.path) for method in route.methods if method != "HEAD"}
    return sorted(found)


def guest_client(make: Callable[[], WebClient], token: str) -> WebClient:
    client = make()
    client.http.cookies.set(GUEST_COOKIE, token, domain=client.http.base_url.host, path="/")
    return client


def app_csrf(client: WebClient) -> str:
    """The CSRF token the guest app's pages hand out ("" without a session)."""
    match = _META_CSRF.search(client.get("/guest").text)
    return match.group(1) if match else ""


def _send(client: WebClient, method: str, path: str, url: str, body: Any) -> httpx.Response:
    if method == "GET":
        return client.get(url)
    # The caller's own valid CSRF token where it has a session, so that what is tested is
    # the object check, not the CSRF check.
    token = app_csrf(client)
    if path.startswith("/guest/api/"):
        return client.http.post(url, json=body, headers={"x-csrf-token": token})
    return client.http.post(url, data={"csrf_token": token, **(body or {})})


@pytest.fixture
def people(live: Any, world: demo.World, mailbox: tuple[Mailbox, int]) -> Iterator[dict[str, Any]]:
    """Guest A (with an open entry on their grant), guest B, and provider P with its
    admin, worker W and an appointment at the home assigned to W."""
    box, _port = mailbox
    home = world.homes[0]
    grant = invite_guest(home, "ana@example.org", "Ana")
    a = accept(live.url, mailed_link(box, "You are invited to Home 1", "ana@example.org"),
               "ana@example.org")  # fmt: skip
    invite_guest(home, "bo@example.org", "Bo")
    accept(live.url, mailed_link(box, "You are invited to Home 1", "bo@example.org"),
           "bo@example.org").close()  # fmt: skip
    assert a.phone is not None
    entry = a.call("POST", "/v1/visits?wait=challenge", 201,
                   json={"grant_id": grant["id"], "device_key_id": a.phone.key_id})  # fmt: skip
    assert entry["state"] == "authorized" and entry["to_sign"], entry
    provider, admin = sign_up_provider(live.url, "Sparkle", "boss@sparkle.test")
    worker = admin.call("POST", f"/v1/providers/{provider['id']}/workers", 201,
                        json={"email": "wes@sparkle.test", "name": "Wes Worker"})  # fmt: skip
    accept(live.url, mailed_link(box, "Join Sparkle on Doorstep", "wes@sparkle.test"),
           "wes@sparkle.test").close()  # fmt: skip
    appointment = book(home, provider["id"], notes="Water the plants")
    admin.call("POST", f"/v1/appointments/{appointment['id']}/assign",
               json={"worker_id": worker["user_id"]})  # fmt: skip
    admin.close()
    yield {"a": a, "grant": grant, "entry": entry, "provider": provider, "worker": worker,
            "appointment": appointment, "home": home}  # fmt: skip
    a.close()


def state(live: Any, p: dict[str, Any]) -> Any:
    """Everything of A's and P's that a request could change."""
    with live.sessions() as session:
        entry = session.get(Entry, p["entry"]["id"])
        appointment = session.get(AccessGrant, p["appointment"]["id"])
        member = session.get(ProviderMember, (p["provider"]["id"], p["worker"]["user_id"]))
        assert entry is not None and appointment is not None and member is not None
        return (
            (entry.state, entry.challenge, entry.device_key_id),
            (appointment.grantee_id, appointment.revoked_at),
            member.active,
            sorted(session.execute(select(DeviceKey.id, DeviceKey.revoked_at)).all()),
            session.scalar(select(func.count()).select_from(Entry)),
            session.scalar(select(func.count()).select_from(User)),
        )


@pytest.mark.slow
def test_every_guest_and_provider_route_hides_other_peoples_grants_entries_and_providers(
    live: Any,
    people: dict[str, Any],
    installed: list[FastAPI],
    web_clients: Callable[[], WebClient],
) -> None:
    p = people
    ids = {
        "grant_id": p["grant"]["id"],
        "entry_id": p["entry"]["id"],
        "provider_id": p["provider"]["id"],
        "worker_id": p["worker"]["user_id"],
        "appointment_id": p["appointment"]["id"],
    }
    assert p["a"].phone is not None
    marks = [*ids.values(), "ana@example.org", "wes@sparkle.test", p["a"].phone.key_id,
             "Water the plants", "Sparkle Boss"]  # fmt: skip

    # A sees their own grant and entry, so not finding them elsewhere means something.
    a = guest_client(web_clients, session_token(live, "ana@example.org"))
    own = a.get(f"/guest/grants/{ids['grant_id']}").text
    own += a.get(f"/guest/api/entries/{ids['entry_id']}").text
    own += a.get("/guest/api/device-keys").text
    assert [
        m for m in [ids["grant_id"], ids["entry_id"], p["a"].phone.key_id] if m not in own
    ] == []
    admin = guest_client(web_clients, session_token(live, "boss@sparkle.test"))
    portal = admin.get(f"/provider/{ids['provider_id']}").text
    assert [m for m in ["wes@sparkle.test", "Water the plants", ids["worker_id"]]
            if m not in portal] == []  # fmt: skip

    routes = visitor_routes(installed[0])
    assert ("GET", "/guest/api/entries/{entry_id}") in routes
    assert ("POST", "/provider/appointments/{appointment_id}/assign") in routes
    jwk = pop.jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    bodies: dict[str, Any] = {
        "/guest/api/device-keys": {"jwk": jwk, "label": "another phone"},
        "/guest/api/visits": {"grant_id": ids["grant_id"]},
        "/guest/api/visits/{entry_id}/unlock": {"proof": "A" * 86},
        "/provider/{provider_id}/workers": {"email": "x@sparkle.test", "name": "X"},
        "/provider/appointments/{appointment_id}/assign": {"worker_id": ids["worker_id"]},
    }
    workers_own = {"Water the plants", ids["appointment_id"], ids["worker_id"]}
    before = state(live, p)
    callers: dict[str, Callable[[], WebClient]] = {
        "another guest": lambda: guest_client(web_clients, session_token(live, "bo@example.org")),
        "the worker": lambda: guest_client(web_clients, session_token(live, "wes@sparkle.test")),
        "a resident": lambda: guest_client(
            web_clients, session_token(live, "resident1@doorstep.test")
        ),
        "nobody": web_clients,
    }
    for method, path in routes:
        parameters = set(re.findall(r"{(\w+)}", path))
        assert parameters <= KNOWN_PARAMETERS, f"teach this test the parameters of {path}"
        url = path
        for name, value in ids.items():
            url = url.replace(f"{{{name}}}", value)
        for who, make in callers.items():
            response = _send(make(), method, path, url, bodies.get(path))
            where = (who, method, path, response.status_code)
            assert response.status_code < 500, where
            signed_in = who in ("another guest", "the worker")
            if (method, path) in ANYONE:
                assert response.status_code == 200, where
            elif (method, path) in NO_SESSION_FORMS:
                assert response.status_code == 403, where  # no visitor CSRF token: nothing done
            elif signed_in and (parameters or path in ("/provider", "/guest/api/visits")):
                assert response.status_code == 404, where  # none of this is theirs
            elif not signed_in and path.startswith("/guest/api/"):
                assert response.status_code == 401, where
            elif not signed_in:
                assert response.status_code == 303, where
                assert response.headers["location"] == "/guest/signin", where
            for mark in marks:
                if who == "the worker" and mark in workers_own:
                    continue  # the worker's own appointment (and id) are theirs to see
                assert mark not in response.text, (*where, mark)
                assert mark not in response.headers.get("location", ""), (*where, mark)
    # Guest B's and the worker's own calls (a phone key each) are all that changed.
    after = state(live, p)
    assert after[:3] == before[:3] and after[4:] == before[4:]
    assert a.get(f"/guest/grants/{ids['grant_id']}").status_code == 200  # A is still in


@pytest.mark.slow
def test_changes_need_the_csrf_token_the_cookie_is_guarded_and_refusals_say_why(
    live: Any, people: dict[str, Any], web_clients: Callable[[], WebClient]
) -> None:
    p = people
    before = state(live, p)
    a = guest_client(web_clients, session_token(live, "ana@example.org"))
    admin = guest_client(web_clients, session_token(live, "boss@sparkle.test"))
    other = guest_client(web_clients, session_token(live, "bo@example.org"))
    attempts = [
        (a, "/guest/api/visits", {"grant_id": p["grant"]["id"]}),
        (a, f"/guest/api/visits/{p['entry']['id']}/unlock", {"proof": "A" * 86}),
        (a, "/guest/api/device-keys", {"jwk": {}, "label": "x"}),
    ]
    for client, url, body in attempts:
        for headers in ({}, {"x-csrf-token": "forged"}, {"x-csrf-token": app_csrf(other)}):
            response = client.http.post(url, json=body, headers=headers)
            assert response.status_code == 403, (url, headers, response.text)
    provider, worker = p["provider"]["id"], p["worker"]["user_id"]
    forms = [
        (a, "/guest/signout", {}),
        (admin, f"/provider/{provider}/workers", {"email": "x@sparkle.test", "name": "X"}),
        (admin, f"/provider/{provider}/workers/{worker}/deactivate", {}),
        (admin, f"/provider/appointments/{p['appointment']['id']}/assign", {"worker_id": worker}),
    ]
    for client, url, data in forms:
        for token in ("", "forged", app_csrf(other)):
            response = client.http.post(url, data={**data, "csrf_token": token})
            assert response.status_code == 403, (url, token, response.text)
    assert state(live, p) == before
    assert a.get("/guest").status_code == 200  # the session was not ended

    # Signing in sets the guest cookie as the resident's is set: HttpOnly, SameSite=Lax.
    fresh = web_clients()
    response = fresh.post("/guest/signin", {"email": "ana@example.org",
                          "password": "visitor-password-1"}, csrf_from="/guest/signin")  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == "/guest"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("doorstep_guest=")
    )
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower(), cookie
    assert "doorstep_session" not in fresh.http.cookies  # not a resident session

    # A grant of A's that the resident has revoked goes to the engine, which says why.
    p["home"].resident.call("DELETE", f"/v1/grants/{p['grant']['id']}")
    assert p["a"].phone is not None
    response = a.http.post(
        "/guest/api/visits",
        json={"grant_id": p["grant"]["id"], "device_key_id": p["a"].phone.key_id},
        headers={"x-csrf-token": app_csrf(a)},
    )
    assert response.status_code == 201, response.text
    refused = response.json()
    assert (refused["state"], refused["reason"]) == ("denied", "grant_revoked")
    assert refused["headline"] == "The door stays locked" and refused["ended"] is True
    assert refused["detail"] == COURIER_ADVICE[Reason.GRANT_REVOKED]
