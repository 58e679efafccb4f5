"""The web app's defences, over HTTP: CSRF on every form, cookie flags, session expiry,
the sign-in limit, security headers, and error messages that reveal no accounts."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from doorstep.homes import service as homes_service
from doorstep.homes.models import Home, Hub
from doorstep.security import token_digest
from doorstep.settings import AuthSettings
from doorstep.web.security import CONTENT_SECURITY_POLICY

from .conftest import Standalone
from .support import PASSWORD, WebClient, new_email, snapshot


def _cookie(response: Any, name: str) -> Any:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    assert name in jar, f"{name} not set: {response.headers.get_list('set-cookie')}"
    return jar[name]


def _alert(html: str) -> str:
    match = re.search(r'<div class="alert" role="alert"><p>(.*?)</p>', html, re.S)
    assert match, "no alert on the page"
    return match.group(1)


def _signed_in(web_clients: Callable[[], WebClient]) -> WebClient:
    client = web_clients()
    email = new_email("csrf")
    client.sign_up(email)
    client.sign_in(email)
    return client


HOME_FORM = {
    "name": "Forged",
    "address": "1 Forged Road",
    "latitude": "51.5",
    "longitude": "-0.1",
    "timezone": "Europe/London",
    "door": "Front door",
}


CLOSURE_FORM = {"kind": "blackout", "first_day": "2031-01-01", "last_day": "2031-01-02"}


def test_posts_without_a_valid_csrf_token_are_refused_and_change_nothing(
    live: Any, web_clients: Callable[[], WebClient]
) -> None:
    resident = _signed_in(web_clients)
    home_id = resident.add_home("Mine")
    other = _signed_in(web_clients)
    foreign_token = other.csrf("/homes/new")  # valid, but bound to another session
    resident.reauth("/account/security")  # so that only the CSRF check stands in the way
    before = snapshot(live)  # after the re-authentication, which is audited
    cases = [
        ("/homes", HOME_FORM),
        (f"/homes/{home_id}/hub", {}),
        (f"/homes/{home_id}/preferences", {"approval_mode": "never"}),
        (f"/homes/{home_id}/closures", CLOSURE_FORM),
        (f"/homes/{home_id}/not-today", {}),
        ("/entries/ent-0000000000000000/approval", {"decision": "approve"}),
        ("/account/notifications", {}),
        ("/account/reauth", {"password": PASSWORD, "next": "/homes"}),
        ("/account/totp/setup", {}),
        ("/account/totp/confirm", {"code": "123456"}),
        ("/account/totp/disable", {}),
        ("/account/sessions/end", {"session": "x"}),
        ("/account/signout-everywhere", {}),
        ("/signout", {}),
    ]
    for path, form in cases:
        for token in (None, "", "forged", foreign_token):
            data = dict(form) if token is None else {**form, "csrf_token": token}
            response = resident.http.post(path, data=data)
            assert response.status_code == 403, (path, token, response.text)
            assert "This form has expired" in response.text
    assert snapshot(live) == before
    assert resident.get(f"/homes/{home_id}").status_code == 200  # still signed in
    with live.sessions() as session:
        assert session.scalars(select(Hub).where(Hub.home_id == home_id)).all() == []
        assert session.scalars(select(Home).where(Home.name == "Forged")).all() == []


def test_sign_in_and_sign_up_forms_need_the_visitor_token(
    live: Any, web_clients: Callable[[], WebClient]
) -> None:
    client = web_clients()
    email = new_email("visitor")
    before = snapshot(live)
    signup = {"email": email, "name": "V", "password": PASSWORD}
    assert client.http.post("/signup", data=signup).status_code == 403  # no cookie, no token
    client.csrf("/signup")  # now the visitor cookie is set
    assert client.http.post("/signup", data={**signup, "csrf_token": "x"}).status_code == 403
    assert snapshot(live) == before
    client.sign_up(email)
    login = {"email": email, "password": PASSWORD, "csrf_token": "x"}
    response = client.http.post("/signin", data=login)
    assert response.status_code == 403
    assert "doorstep_session" not in response.headers.get("set-cookie", "")


def test_session_cookie_flags_over_http(live: Any, web_clients: Callable[[], WebClient]) -> None:
    client = web_clients()
    email = new_email("cookie")
    client.sign_up(email)
    cookie = _cookie(client.sign_in(email), "doorstep_session")
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(live.settings.auth.token_ttl_seconds)
    assert not cookie["secure"]  # the public URL is plain http here
    assert not cookie["domain"]


def test_session_cookie_is_secure_and_host_only_over_https(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone(public_url="https://doorstep.example")
    client = app.web()
    client.sign_up("tls@doorstep.test")
    response = client.sign_in("tls@doorstep.test")
    cookie = _cookie(response, "__Host-doorstep_session")
    assert cookie["secure"] is True and cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax" and cookie["path"] == "/"
    assert not cookie["domain"]  # __Host- cookies must not name a domain
    assert _cookie(client.get("/signin"), "__Host-doorstep_visitor")["secure"] is True
    page = client.get("/homes")
    assert page.status_code == 200
    assert page.headers["strict-transport-security"] == "max-age=31536000"


def test_an_expired_session_goes_back_to_sign_in(standalone: Callable[..., Standalone]) -> None:
    app = standalone()
    client = app.web()
    client.sign_up("expiry@doorstep.test")
    client.sign_in("expiry@doorstep.test")
    home_id = client.add_home("Expiring")
    assert client.get(f"/homes/{home_id}").status_code == 200
    app.clock.set(app.clock.now() + timedelta(seconds=app.settings.auth.token_ttl_seconds))
    page = client.get(f"/homes/{home_id}")
    assert page.status_code == 303 and page.headers["location"] == "/signin"
    assert 'doorstep_session=""' in page.headers["set-cookie"]  # the stale cookie is dropped
    live = client.get(f"/homes/{home_id}/live")
    assert live.status_code == 401
    assert live.json()["error"]["code"] == "not_authenticated"


def test_sign_in_is_rate_limited(standalone: Callable[..., Standalone]) -> None:
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=1))  # 6 tries a minute
    client = app.web()
    client.sign_up("limited@doorstep.test")  # sign-up counts too: 5 tries left
    wrong = {"email": "limited@doorstep.test", "password": "not the password"}
    for _ in range(5):
        response = client.post("/signin", wrong, csrf_from="/signin")
        assert response.status_code == 422
        assert _alert(response.text) == "Wrong email or password."
    right = {"email": "limited@doorstep.test", "password": PASSWORD}
    refused = client.post("/signin", right, csrf_from="/signin")
    assert refused.status_code == 429
    assert "Too many attempts" in _alert(refused.text)
    assert "set-cookie" not in refused.headers or "doorstep_session" not in str(
        refused.headers.get_list("set-cookie")
    )
    app.clock.set(app.clock.now() + timedelta(seconds=61))
    client.sign_in("limited@doorstep.test")


def test_failed_sign_in_says_the_same_for_unknown_and_known_emails(
    standalone: Callable[..., Standalone],
) -> None:
    client = standalone().web()
    client.sign_up("known@doorstep.test")
    known = client.post(
        "/signin",
        {"email": "known@doorstep.test", "password": "wrong password"},
        csrf_from="/signin",
    )
    unknown = client.post(
        "/signin",
        {"email": "nobody@doorstep.test", "password": "wrong password"},
        csrf_from="/signin",
    )
    assert known.status_code == unknown.status_code == 422
    assert _alert(known.text) == _alert(unknown.text) == "Wrong email or password."


def test_security_headers_on_pages_static_files_and_errors(
    standalone: Callable[..., Standalone],
) -> None:
    client = standalone().web()
    for path in ("/signin", "/static/app.js", "/static/app.css", "/homes", "/nowhere"):
        headers = client.get(path).headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
    assert client.get("/signin").headers["cache-control"] == "no-store"
    # The JSON API and its docs page are left as they were.
    assert "content-security-policy" not in client.get("/v1/homes").headers
    assert "content-security-policy" not in client.get("/docs").headers


def test_pages_use_no_inline_script_or_style(standalone: Callable[..., Standalone]) -> None:
    client = standalone().web()
    client.sign_up("inline@doorstep.test")
    client.sign_in("inline@doorstep.test")
    home_id = client.add_home("Inline")
    for path in ("/signin", "/homes", f"/homes/{home_id}", f"/homes/{home_id}/hub"):
        html = client.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert " style=" not in html and "<style" not in html, path
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", html), path  # no event attributes


def test_form_errors_are_shown_next_to_their_fields(standalone: Callable[..., Standalone]) -> None:
    client = standalone().web()
    short = {"email": "short@doorstep.test", "name": "Shorty", "password": "short"}
    page = client.post("/signup", short, csrf_from="/signup")
    assert page.status_code == 422
    assert 'aria-invalid="true"' in page.text
    assert 'id="password-error">Use at least 10 characters.' in page.text
    assert 'value="Shorty"' in page.text and "short</" not in page.text  # no password echo
    client.sign_up("forms@doorstep.test")
    client.sign_in("forms@doorstep.test")
    bad = {**HOME_FORM, "latitude": "north", "timezone": "Mars/Olympus"}
    page = client.post("/homes", bad, csrf_from="/homes/new")
    assert page.status_code == 422
    assert "Enter the latitude in degrees" in page.text
    assert "Choose the home&#39;s time zone." in page.text


def test_sessions_page_lists_sessions_and_never_shows_tokens(
    live: Any, web_clients: Callable[[], WebClient]
) -> None:
    email = new_email("sessions")
    phone, laptop = web_clients(), web_clients()
    phone.sign_up(email)
    phone.sign_in(email)
    laptop.sign_in(email)
    page = phone.get("/account/security")
    assert page.status_code == 200
    assert page.text.count('class="card session"') == 2
    assert page.text.count("This browser") == 1
    for client in (phone, laptop):
        token = client.http.cookies["doorstep_session"]
        assert token not in page.text and token_digest(token) not in page.text
    # Signing out everywhere asks for the password again first.
    response = phone.post("/account/signout-everywhere", {}, csrf_from="/account/security")
    assert response.status_code == 303
    assert response.headers["location"] == "/account/reauth?next=/account/security"
    phone.reauth("/account/security")
    response = phone.post("/account/signout-everywhere", {}, csrf_from="/account/security")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?notice=everywhere"
    for client in (phone, laptop):
        assert client.get("/homes").headers["location"] == "/signin"


@pytest.mark.parametrize("path", ["/homes", "/account/security", "/homes/home-x"])
def test_pages_need_a_session(path: str, standalone: Callable[..., Standalone]) -> None:
    response = standalone().web().get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/signin"


def test_a_busy_database_is_a_page_that_says_to_try_again(
    live: Any,
    web_clients: Callable[[], WebClient],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As the ORM raises it when the database says "not now" (SQLite: the lock not had
    # within the busy timeout; PostgreSQL: a deadlock): a page, not the API's JSON.
    client = _signed_in(web_clients)
    before = snapshot(live)
    cause: Exception = (
        sqlite3.OperationalError("database is locked")
        if database_url.startswith("sqlite")
        else psycopg.errors.DeadlockDetected("deadlock detected")
    )

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise OperationalError("INSERT INTO homes", {}, cause)

    monkeypatch.setattr(homes_service, "create_home", refused)
    response = client.post("/homes", HOME_FORM, csrf_from="/homes/new")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "Try again in a moment" in response.text
    assert "The database is busy; nothing was changed, try again." in response.text
    assert snapshot(live) == before
