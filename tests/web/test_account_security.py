"""Account security over HTTP, on a frozen clock: TOTP (RFC 6238 vectors; enrolment,
confirmation, the code at sign-in, replays refused, a lock after wrong codes, recovery
codes kept only as digests and good once), re-authentication before sensitive actions
and its expiry, ending one session, last seen, and the emails a resident chooses."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from doorstep import demo
from doorstep.accounts import totp, twofactor
from doorstep.accounts.models import RecoveryCode, TotpCredential
from doorstep.notify.models import OutboxMessage
from doorstep.security import token_digest
from doorstep.web.models import WebSession
from doorstep.web.reauth import safe_next

from .conftest import Standalone
from .support import PASSWORD, WebClient, session_token

SECRET = b"12345678901234567890"  # RFC 6238 appendix B, SHA-1


def test_totp_matches_the_rfc_6238_vectors() -> None:
    vectors = {
        59: "94287082",
        1111111109: "07081804",
        1111111111: "14050471",
        1234567890: "89005924",
        2000000000: "69279037",
        20000000000: "65353130",
    }
    for at, code in vectors.items():
        assert totp.totp(SECRET, at, digits=8) == code
    now = 1234567890.0
    assert totp.matching_step(SECRET, totp.totp(SECRET, now), now) == totp.step_at(now)
    assert totp.matching_step(SECRET, totp.totp(SECRET, now - 30), now) == totp.step_at(now) - 1
    assert totp.matching_step(SECRET, totp.totp(SECRET, now - 60), now) is None
    right = totp.totp(SECRET, now)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    assert totp.matching_step(SECRET, wrong, now) is None
    assert totp.matching_step(SECRET, f"{right[:3]} {right[3:]}", now) == totp.step_at(now)


@contextmanager
def _db(app: Standalone) -> Iterator[Session]:
    engine = create_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _signed_in(app: Standalone, email: str) -> WebClient:
    client = app.web()
    client.sign_up(email)
    client.sign_in(email)
    return client


def _key(page: str) -> bytes:
    match = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page)
    assert match, "no key on the page"
    key = match.group(1).replace(" ", "")
    return base64.b32decode(key + "=" * (-len(key) % 8))


def _turn_on(app: Standalone, client: WebClient) -> tuple[bytes, list[str]]:
    client.reauth("/account/security")
    page = client.post("/account/totp/setup", {}, csrf_from="/account/security")
    assert page.status_code == 200, page.text
    secret = _key(page.text)
    code = totp.totp(secret, app.clock.timestamp())
    done = client.post("/account/totp/confirm", {"code": code}, csrf_from="/account/security")
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.text)
    assert len(codes) == 10
    return secret, codes


def _password_step(client: WebClient, email: str) -> httpx.Response:
    response = client.post("/signin", {"email": email, "password": PASSWORD}, csrf_from="/signin")
    assert response.status_code == 303
    return response


def _code_step(client: WebClient, code: str) -> httpx.Response:
    return client.post("/signin/code", {"code": code}, csrf_from="/signin")


def test_two_step_sign_in_replays_lockout_and_recovery_codes(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "twostep@doorstep.test"
    client = _signed_in(app, email)
    secret, codes = _turn_on(app, client)

    # The app's key is kept (it must be, to check codes) but sealed under a key file the
    # database does not hold; recovery codes are only hashed.
    with _db(app) as db:
        credential = db.scalars(select(TotpCredential)).one()
        assert credential.confirmed_at is not None
        assert secret not in credential.secret
        key = (app.settings.data_dir / "keys" / twofactor.KEY_FILE).read_bytes()
        assert twofactor.unseal(key, credential.user_id, credential.secret) == secret
        with pytest.raises(twofactor.SealBroken):  # bound to its user
            twofactor.unseal(key, "usr-someone-else", credential.secret)
        digests = set(db.scalars(select(RecoveryCode.digest)))
    assert digests == {hashlib.sha256(code.replace("-", "").encode()).hexdigest() for code in codes}

    # The password alone starts no session: a signed, HttpOnly cookie waits for the code.
    client.post("/signout", {}, csrf_from="/account/security")
    response = _password_step(client, email)
    assert response.headers["location"] == "/signin/code"
    assert "doorstep_session=" not in response.headers.get("set-cookie", "")
    assert "doorstep_pending=" in response.headers["set-cookie"]
    assert "HttpOnly" in response.headers["set-cookie"]
    assert client.get("/homes").headers["location"] == "/signin"

    # The code that confirmed the app is spent; the next step's code signs in.
    replay = _code_step(client, totp.totp(secret, app.clock.timestamp()))
    assert replay.status_code == 422 and "already used" in replay.text
    app.clock.set(app.clock.now() + timedelta(seconds=30))
    signed_in = _code_step(client, totp.totp(secret, app.clock.timestamp()))
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/homes"
    assert client.get("/homes").status_code == 200

    # Five wrong codes lock the account's codes for five minutes, the right one included.
    client.post("/signout", {}, csrf_from="/homes")
    _password_step(client, email)
    app.clock.set(app.clock.now() + timedelta(seconds=30))
    right = totp.totp(secret, app.clock.timestamp())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(twofactor.MAX_FAILURES):
        assert _code_step(client, wrong).status_code == 422
    locked = _code_step(client, right)
    assert locked.status_code == 429 and "Too many wrong codes" in locked.text
    # The half-way sign-in expires meanwhile; after the lock, from the start again.
    app.clock.set(app.clock.now() + timedelta(seconds=twofactor.LOCK_SECONDS + 1))
    expired = _code_step(client, totp.totp(secret, app.clock.timestamp()))
    assert expired.headers["location"] == "/signin?notice=code-expired"
    _password_step(client, email)
    assert _code_step(client, totp.totp(secret, app.clock.timestamp())).status_code == 303

    # A recovery code works once.
    client.post("/signout", {}, csrf_from="/homes")
    _password_step(client, email)
    assert _code_step(client, codes[0]).status_code == 303
    client.post("/signout", {}, csrf_from="/homes")
    _password_step(client, email)
    assert _code_step(client, codes[0]).status_code == 422
    assert _code_step(client, codes[1].upper().replace("-", " ")).status_code == 303

    # Turning it off needs the password and a code, recently.
    response = client.post("/account/totp/disable", {}, csrf_from="/account/security")
    assert response.headers["location"] == "/account/reauth?next=/account/security"
    no_code = client.post(
        "/account/reauth",
        {"password": PASSWORD, "next": "/account/security"},
        csrf_from="/account/reauth",
    )
    assert no_code.status_code == 422 and "That code is not right" in no_code.text
    app.clock.set(app.clock.now() + timedelta(seconds=30))
    client.reauth("/account/security", code=totp.totp(secret, app.clock.timestamp()))
    off = client.post("/account/totp/disable", {}, csrf_from="/account/security")
    assert off.headers["location"] == "/account/security?notice=totp-off"
    with _db(app) as db:
        assert db.scalars(select(TotpCredential)).all() == []
        assert db.scalars(select(RecoveryCode)).all() == []
    client.post("/signout", {}, csrf_from="/homes")
    client.sign_in(email)  # the password alone again


def test_a_key_stored_in_plain_by_an_earlier_version_still_works_and_is_sealed(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "legacy@doorstep.test"
    client = _signed_in(app, email)
    secret, _codes = _turn_on(app, client)
    with _db(app) as db:  # as an earlier version stored it
        credential = db.scalars(select(TotpCredential)).one()
        credential.secret = secret
        db.commit()

    client.post("/signout", {}, csrf_from="/account/security")
    _password_step(client, email)
    app.clock.set(app.clock.now() + timedelta(seconds=30))
    signed_in = _code_step(client, totp.totp(secret, app.clock.timestamp()))
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/homes"

    with _db(app) as db:
        user_id, stored = db.execute(select(TotpCredential.user_id, TotpCredential.secret)).one()
    assert secret not in stored
    key = (app.settings.data_dir / "keys" / twofactor.KEY_FILE).read_bytes()
    assert twofactor.unseal(key, user_id, stored) == secret


def test_re_authentication_expires_and_is_per_session(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    phone = _signed_in(app, "reauth@doorstep.test")
    laptop = app.web()
    laptop.sign_in("reauth@doorstep.test")
    phone.reauth("/account/security")
    setup = laptop.post("/account/totp/setup", {}, csrf_from="/account/security")
    assert setup.status_code == 303 and "/account/reauth" in setup.headers["location"]
    app.clock.set(app.clock.now() + timedelta(minutes=5, seconds=1))
    late = phone.post("/account/signout-everywhere", {}, csrf_from="/account/security")
    assert late.headers["location"] == "/account/reauth?next=/account/security"
    assert laptop.get("/homes").status_code == 200  # nothing was ended
    # Only paths on this site are followed afterwards.
    for target in ("https://evil.example/", "//evil.example/x", "homes"):
        response = phone.post(
            "/account/reauth",
            {"password": PASSWORD, "next": target},
            csrf_from="/account/reauth",
        )
        assert response.headers["location"] == "/homes", target


def test_end_one_session_and_last_seen(standalone: Callable[..., Standalone]) -> None:
    app = standalone()
    phone = _signed_in(app, "devices@doorstep.test")
    laptop = app.web()
    laptop.http.headers["user-agent"] = "Mozilla/5.0 (Windows NT 10.0) Firefox/133.0"
    laptop.sign_in("devices@doorstep.test")
    other = _signed_in(app, "stranger@doorstep.test")
    app.clock.set(app.clock.now() + timedelta(minutes=2))
    page = phone.get("/account/security").text
    assert "Firefox on Windows" in page
    handles = re.findall(r'name="session" value="([^"]+)"', page)
    assert len(handles) == 2
    with _db(app) as db:
        rows = db.scalars(select(WebSession)).all()
        assert {row.digest for row in rows}.isdisjoint(set(handles))
        seen = {row.digest: row.last_seen_at for row in rows}
    assert seen[token_digest(phone.http.cookies["doorstep_session"])] == app.clock.now()

    # Another account cannot end these sessions.
    for handle in handles:
        stranger = other.post(
            "/account/sessions/end", {"session": handle}, csrf_from="/account/security"
        )
        assert stranger.status_code == 404
    laptops = [h for h in handles if f'value="{h}"' in page.split("Firefox on Windows")[1][:2000]]
    ended = phone.post(
        "/account/sessions/end", {"session": laptops[0]}, csrf_from="/account/security"
    )
    assert ended.headers["location"] == "/account/security?notice=session-ended"
    assert laptop.get("/homes").headers["location"] == "/signin"
    assert phone.get("/homes").status_code == 200


def test_emails_follow_the_residents_choice(
    live: Any, world: demo.World, web_clients: Callable[[], WebClient]
) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    resident = web_clients().use_session(session_token(live, "resident1@doorstep.test"))
    page = resident.get("/account/notifications").text
    assert 'id="alerts" checked disabled' in page  # alerts have no switch
    saved = resident.post(
        "/account/notifications", {"entry_ended": "on"}, csrf_from="/account/notifications"
    )
    assert saved.headers["location"] == "/account/notifications?saved=1"
    assert 'id="entry_started" name="entry_started" aria-describedby="entry_started-hint">' in (
        resident.get("/account/notifications").text
    )
    delivery = demo.book(world, home, ["PKG-MAIL"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-MAIL", home.latitude, home.longitude)
    home.door("open_door")
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"
    with live.sessions() as session:
        mail = set(
            session.scalars(
                select(OutboxMessage.event_type).where(
                    OutboxMessage.channel == "email",
                    OutboxMessage.event_id.startswith(entry["id"]),
                )
            )
        )
    assert mail == {"entry.done"}  # "a courier is at your door" was switched off


def test_only_paths_on_this_site_are_followed_after_re_authentication() -> None:
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "homes", ""):
        assert safe_next(target) == "/homes", target
    assert safe_next("/homes/h-1?answered=approve") == "/homes/h-1?answered=approve"
