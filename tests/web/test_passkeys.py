"""Passkeys through the resident's pages over HTTP (`doorstep.web.passkeys`), answered by
a software authenticator with a real ES256 key: adding one needs a recent
re-authentication; signing in with one needs no email, password or code, even with
two-step sign-in on; refusals are on the audit log (`via` `passkey`) and count against
the sign-in limiter the password form uses; removing one needs a re-authentication, and
only one's own."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from doorstep.accounts import totp
from doorstep.accounts.models import Passkey, User
from doorstep.audit.models import AuditEvent
from doorstep.settings import AuthSettings
from passkey_device import Authenticator

from .conftest import Standalone
from .support import WebClient

PUBLIC = "https://doorstep.example.com"
RP_ID = "doorstep.example.com"
_OPTIONS = re.compile(r'data-options="([^"]+)"')
_TOTP_KEY = re.compile(r'id="totp-key">([A-Z2-7 ]+)<')


@contextmanager
def _db(app: Standalone) -> Iterator[Session]:
    engine = create_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _records(app: Standalone, action: str) -> list[tuple[str, dict[str, Any]]]:
    with _db(app) as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
        return [(row.subject, dict(row.data)) for row in rows]


def _user_id(app: Standalone, email: str) -> str:
    with _db(app) as db:
        user_id = db.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


def _options(page: httpx.Response) -> str:
    assert page.status_code == 200, page.text
    match = _OPTIONS.search(page.text)
    assert match, "no passkey options on the page"
    return html.unescape(match.group(1))


def _signed_in(app: Standalone, email: str) -> WebClient:
    client = app.web()
    client.sign_up(email)
    client.sign_in(email)
    return client


def _add(client: WebClient, device: Authenticator, name: str = "Phone") -> httpx.Response:
    page = client.post("/account/passkeys/new", {}, csrf_from="/account/passkeys")
    answer = device.create(_options(page))
    return client.post(
        "/account/passkeys", {"name": name, "credential": answer}, csrf_from="/account/passkeys"
    )


def _passkey_sign_in(client: WebClient, device: Authenticator, **answer: Any) -> httpx.Response:
    page = client.post("/signin/passkey", {}, csrf_from="/signin")
    response = device.get(_options(page), **answer)
    return client.post("/signin/passkey/finish", {"credential": response}, csrf_from="/signin")


def _turn_totp_on(app: Standalone, client: WebClient) -> bytes:
    client.reauth("/account/security")
    page = client.post("/account/totp/setup", {}, csrf_from="/account/security")
    match = _TOTP_KEY.search(page.text)
    assert match
    key = match.group(1).replace(" ", "")
    secret = base64.b32decode(key + "=" * (-len(key) % 8))
    code = totp.totp(secret, app.clock.timestamp())
    done = client.post("/account/totp/confirm", {"code": code}, csrf_from="/account/security")
    assert done.status_code == 200, done.text
    return secret


def test_a_passkey_added_after_reauth_signs_in_with_no_password_or_code(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone(public_url=PUBLIC)
    email = "passkey@doorstep.test"
    client = _signed_in(app, email)
    secret = _turn_totp_on(app, client)
    user_id = _user_id(app, email)
    security = client.get("/account/security")
    assert 'href="/account/passkeys"' in security.text

    # Adding one asks for the password (and code) again first, then comes back.
    app.clock.set(app.clock.now() + timedelta(minutes=10))
    asked = client.post("/account/passkeys/new", {}, csrf_from="/account/passkeys")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/account/reauth?next=/account/passkeys"
    client.reauth("/account/passkeys", code=totp.totp(secret, app.clock.timestamp()))
    device = Authenticator(origin=PUBLIC, rp_id=RP_ID)
    added = _add(client, device, name="Work laptop")
    assert added.status_code == 303, added.text
    assert added.headers["location"] == "/account/passkeys?notice=added"
    listed = client.get("/account/passkeys").text
    assert "Work laptop" in listed and "Not yet" in listed
    assert _records(app, "account:passkey:added") == [(user_id, {"name": "Work laptop"})]

    # Another browser: no email, no password, no code.
    browser = app.web()
    assert "Sign in with a passkey" in browser.get("/signin").text
    signed_in = _passkey_sign_in(browser, device)
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == "/homes"
    assert browser.get("/account/security").status_code == 200
    assert "Not yet" not in browser.get("/account/passkeys").text  # last used: now
    assert (user_id, {"via": "passkey", "client": "127.0.0.1"}) in _records(app, "account:signin")


def test_a_refused_passkey_is_audited_and_counts_against_the_sign_in_limit(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone(public_url=PUBLIC, auth=AuthSettings(max_login_failures_per_minute=1))
    email = "refused@doorstep.test"
    owner = _signed_in(app, email)
    owner.reauth("/account/passkeys")
    device = Authenticator(origin=PUBLIC, rp_id=RP_ID)
    assert _add(owner, device).status_code == 303
    user_id = _user_id(app, email)
    app.clock.set(app.clock.now() + timedelta(seconds=61))  # sign-up, sign-in, reauth: past

    phished = _passkey_sign_in(app.web(), device, origin="https://doorstep-example.test")
    assert phished.status_code == 422
    assert "That passkey did not work" in phished.text
    assert "doorstep_session=" not in phished.headers.get("set-cookie", "")
    stranger = _passkey_sign_in(app.web(), Authenticator(origin=PUBLIC, rp_id=RP_ID))
    assert stranger.status_code == 422
    failures = _records(app, "account:signin_failed")
    assert failures == [
        (user_id, {"via": "passkey", "client": "127.0.0.1", "reason": "passkey_refused"}),
        ("unknown", {"via": "passkey", "client": "127.0.0.1", "reason": "passkey_refused"}),
    ]

    # Six attempts a minute from one address (1 x 6), each step counted, shared with the
    # password form: the fourth passkey sign-in in a minute is refused, and so is the
    # password.
    app.clock.set(app.clock.now() + timedelta(seconds=61))
    for _ in range(3):
        assert _passkey_sign_in(app.web(), device).status_code == 303
    late = app.web().post("/signin/passkey", {}, csrf_from="/signin")
    assert late.status_code == 429 and "Too many attempts" in late.text
    password = app.web().post("/signin", {"email": email, "password": "x"}, csrf_from="/signin")
    assert password.status_code == 429


def test_a_passkey_whose_count_goes_back_is_refused_and_audited(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone(public_url=PUBLIC)
    email = "cloned@doorstep.test"
    owner = _signed_in(app, email)
    owner.reauth("/account/passkeys")
    device = Authenticator(origin=PUBLIC, rp_id=RP_ID)
    assert _add(owner, device).status_code == 303
    device.sign_count = 40
    assert _passkey_sign_in(app.web(), device).status_code == 303
    device.sign_count = 10  # a copy of the key
    copied = _passkey_sign_in(app.web(), device)
    assert copied.status_code == 422
    reason = {"via": "passkey", "client": "127.0.0.1", "reason": "passkey_counter"}
    assert _records(app, "account:signin_failed") == [(_user_id(app, email), reason)]
    with _db(app) as db:
        assert db.scalars(select(Passkey.sign_count)).one() == 41


def test_removing_needs_reauth_and_only_removes_ones_own(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone(public_url=PUBLIC)
    ada, bea = _signed_in(app, "ada@doorstep.test"), _signed_in(app, "bea@doorstep.test")
    for client in (ada, bea):
        client.reauth("/account/passkeys")
        assert _add(client, Authenticator(origin=PUBLIC, rp_id=RP_ID)).status_code == 303
    ada_id = _user_id(app, "ada@doorstep.test")
    with _db(app) as db:
        keys = {key.user_id: key.id for key in db.scalars(select(Passkey))}
    beas = next(key for owner, key in keys.items() if owner != ada_id)

    app.clock.set(app.clock.now() + timedelta(minutes=10))
    asked = ada.post("/account/passkeys/remove", {"passkey": keys[ada_id]},
                     csrf_from="/account/passkeys")  # fmt: skip
    assert asked.headers["location"] == "/account/reauth?next=/account/passkeys"
    ada.reauth("/account/passkeys")
    other = ada.post("/account/passkeys/remove", {"passkey": beas}, csrf_from="/account/passkeys")
    assert other.status_code == 404
    own = ada.post("/account/passkeys/remove", {"passkey": keys[ada_id]},
                   csrf_from="/account/passkeys")  # fmt: skip
    assert own.headers["location"] == "/account/passkeys?notice=removed"
    with _db(app) as db:
        assert list(db.scalars(select(Passkey.id))) == [beas]
    assert _records(app, "account:passkey:removed") == [(ada_id, {"name": "Phone"})]


def test_passkeys_are_not_offered_on_an_ip_address(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()  # http://127.0.0.1:<port>: no RP ID can name it
    client = _signed_in(app, "noname@doorstep.test")
    assert "Sign in with a passkey" not in app.web().get("/signin").text
    assert "not an IP address" in client.get("/account/passkeys").text
    assert app.web().post("/signin/passkey", {}, csrf_from="/signin").status_code == 404
