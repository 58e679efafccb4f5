"""Two-step sign-in through the API, as the account security page does it:
`POST /v1/me/two-factor` (the password again) answers a new key, pending until
`POST /v1/me/two-factor/confirm` takes a code from the app; that turns it on, hands out
recovery codes and ends the account's other sessions and API tokens.
`DELETE /v1/me/two-factor` (the password and a current code) turns it off. Refusals
change nothing; guesses are limited per address and, for codes, per account."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from doorstep import db
from doorstep.accounts import totp, twofactor
from doorstep.accounts.models import Role, TotpCredential, User
from doorstep.accounts.service import create_user
from doorstep.app import create_app
from doorstep.audit.models import AuditEvent
from doorstep.broker.supervisor import free_port
from doorstep.clock import FrozenClock
from doorstep.settings import AuthSettings, Settings
from doorstep.web import install

from .conftest import Standalone, _Server
from .support import PASSWORD

TWO_FACTOR = "/v1/me/two-factor"
# Where a two-step change came from, on its audit record as on a sign-in's.
API_ORIGIN = {"via": "api_two_factor", "client": "127.0.0.1"}


@pytest.fixture
def standalone(
    tmp_path: Path, database_url: str, migrated_engine: Engine
) -> Iterator[Callable[..., Standalone]]:
    """As tests/web's `standalone` (no broker, a frozen clock), on SQLite and PostgreSQL."""
    running: list[tuple[_Server, threading.Thread, Standalone]] = []

    def make(auth: AuthSettings | None = None) -> Standalone:
        settings = Settings(
            data_dir=tmp_path / "svc", database_url=database_url, auth=auth or AuthSettings()
        )
        clock = FrozenClock(datetime(2030, 1, 7, 9, 0, tzinfo=UTC))
        app = create_app(settings, broker=None, clock=clock)
        install(app)
        port = free_port()
        server = _Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        assert server.ready.wait(30), "service did not start"
        service = Standalone(f"http://127.0.0.1:{port}", clock, settings)
        running.append((server, thread, service))
        return service

    yield make
    for server, thread, service in running:
        for client in service.clients:
            client.close()
        server.should_exit = True
        thread.join(15)


@contextmanager
def _db(app: Standalone) -> Iterator[Session]:
    engine = db.make_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _resident(app: Standalone, email: str) -> str:
    body = {"email": email, "name": "Pat", "password": PASSWORD}
    assert httpx.post(f"{app.url}/v1/residents", json=body, timeout=30).status_code == 201
    return _token(app, email).json()["access_token"]


def _token(app: Standalone, email: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "password", "username": email, "password": PASSWORD, **extra}
    return httpx.post(f"{app.url}/v1/auth/token", data=form, timeout=30)


def _call(
    app: Standalone, method: str, path: str, token: str | None, **body: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{app.url}{path}", json=body, headers=headers, timeout=30)


def _works(app: Standalone, token: str) -> bool:
    response = httpx.get(f"{app.url}/v1/homes", headers={"authorization": f"Bearer {token}"})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def _secret(answer: httpx.Response) -> bytes:
    assert answer.status_code == 201, answer.text
    key = answer.json()["secret"]
    uri = urlsplit(answer.json()["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [key]
    return base64.b32decode(key + "=" * (-len(key) % 8))


def _code(app: Standalone, secret: bytes, later: int = 0) -> str:
    app.clock.set(app.clock.now() + timedelta(seconds=later))
    return totp.totp(secret, app.clock.timestamp())


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _credential(app: Standalone) -> TotpCredential | None:
    with _db(app) as db:
        return db.scalars(select(TotpCredential)).one_or_none()


def _actions(app: Standalone, action: str) -> list[dict[str, Any]]:
    with _db(app) as db:
        return list(db.scalars(select(AuditEvent.data).where(AuditEvent.action == action)))


def _error(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def test_turn_on_through_the_api_ends_other_sessions_and_asks_for_codes(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "api-2fa@doorstep.test"
    token = _resident(app, email)
    other = _token(app, email).json()["access_token"]
    browser = app.web()
    browser.sign_in(email)

    wrong_password = _call(app, "POST", TWO_FACTOR, token, password="not my password")
    assert wrong_password.status_code == 401, wrong_password.text
    assert _credential(app) is None
    assert _actions(app, "account:reauth_failed")[-1]["via"] == "api_two_factor"

    secret = _secret(_call(app, "POST", TWO_FACTOR, token, password=PASSWORD))
    # Pending: nothing is asked yet, nothing has ended.
    assert _token(app, email).status_code == 200
    assert _works(app, other) and browser.get("/homes").status_code == 200

    refused = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=_wrong(_code(app, secret)))
    assert refused.status_code == 422, refused.text
    credential = _credential(app)
    assert credential is not None and credential.confirmed_at is None
    assert _works(app, other)

    on = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=_code(app, secret))
    assert on.status_code == 200, on.text
    assert len(on.json()["recovery_codes"]) == 10
    assert on.json()["sessions_ended"] == 3  # the other tokens and the browser's session
    assert _works(app, token)
    assert not _works(app, other)
    assert browser.get("/homes").status_code == 303
    assert _actions(app, "account:totp:on") == [API_ORIGIN]
    assert _actions(app, "account:sessions:revoked")[-1]["why"] == "totp_on"
    assert _token(app, email).status_code == 401  # the password alone no longer does
    assert _token(app, email, code=on.json()["recovery_codes"][0]).status_code == 200

    again = _call(app, "POST", TWO_FACTOR, token, password=PASSWORD, code=_code(app, secret, 30))
    assert again.status_code == 409, again.text
    assert _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code="123456").status_code == 409


def test_turn_off_needs_the_password_and_a_fresh_code(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    token = _resident(app, "api-2fa-off@doorstep.test")
    secret = _secret(_call(app, "POST", TWO_FACTOR, token, password=PASSWORD))
    confirming = _code(app, secret)
    assert _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=confirming).status_code == 200

    for body in (
        {"password": PASSWORD},  # no code
        {"password": PASSWORD, "code": confirming},  # the confirming code, replayed
        {"password": "not my password", "code": _code(app, secret, 30)},
    ):
        refused = _call(app, "DELETE", TWO_FACTOR, token, **body)
        assert refused.status_code == 401, (body, refused.text)
        assert twofactor_on(app)

    off = _call(app, "DELETE", TWO_FACTOR, token, password=PASSWORD, code=_code(app, secret, 30))
    assert off.status_code == 204, off.text
    assert _credential(app) is None
    assert _actions(app, "account:totp:off") == [API_ORIGIN]
    assert _token(app, "api-2fa-off@doorstep.test").status_code == 200
    not_on = _call(app, "DELETE", TWO_FACTOR, token, password=PASSWORD)
    assert not_on.status_code == 409, not_on.text


def twofactor_on(app: Standalone) -> bool:
    credential = _credential(app)
    return credential is not None and credential.confirmed_at is not None


def test_wrong_codes_lock_the_account_codes(standalone: Callable[..., Standalone]) -> None:
    app = standalone()
    token = _resident(app, "api-2fa-lock@doorstep.test")
    secret = _secret(_call(app, "POST", TWO_FACTOR, token, password=PASSWORD))
    assert _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=_code(app, secret)).is_success

    right = _code(app, secret, 30)
    for _ in range(twofactor.MAX_FAILURES):
        wrong = _call(app, "DELETE", TWO_FACTOR, token, password=PASSWORD, code=_wrong(right))
        assert wrong.status_code == 401, wrong.text
    locked = _call(app, "DELETE", TWO_FACTOR, token, password=PASSWORD, code=right)
    assert locked.status_code == 429 and _error(locked) == "code_locked", locked.text
    assert twofactor_on(app)
    until = app.clock.now() + timedelta(seconds=twofactor.LOCK_SECONDS)
    assert _actions(app, "account:totp:locked") == [{"until": until.isoformat()}]


def test_code_guesses_are_limited_per_address(standalone: Callable[..., Standalone]) -> None:
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=1))  # 6 a minute
    token = _resident(app, "api-2fa-limit@doorstep.test")  # one sign-in
    secret = _secret(_call(app, "POST", TWO_FACTOR, token, password=PASSWORD))  # two
    right = _code(app, secret)
    answers = [
        _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=_wrong(right)).status_code
        for _ in range(5)
    ]
    assert answers == [422, 422, 422, 422, 429]
    limited = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=right)
    assert limited.status_code == 429 and _error(limited) == "rate_limited"
    assert not twofactor_on(app)
    app.clock.set(app.clock.now() + timedelta(seconds=61))
    on = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=_code(app, secret))
    assert on.status_code == 200, on.text


def test_bad_input_and_other_callers_change_nothing(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    token = _resident(app, "api-2fa-bad@doorstep.test")
    assert _call(app, "POST", TWO_FACTOR, None, password=PASSWORD).status_code == 401
    assert _call(app, "POST", TWO_FACTOR, "not-a-token", password=PASSWORD).status_code == 401
    for body in ({}, {"password": ""}, {"password": PASSWORD, "extra": "x"}):
        assert _call(app, "POST", TWO_FACTOR, token, **body).status_code == 422, body
    assert _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code="1" * 40).status_code == 422
    assert _call(app, "POST", f"{TWO_FACTOR}/confirm", token).status_code == 422
    # Nothing waits to be confirmed yet.
    assert _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code="123456").status_code == 409
    assert _credential(app) is None

    # Only residents: the courier and visitor apps sign in with the password alone.
    with _db(app) as db:
        create_user(db, email="ops-2fa@doorstep.test", name="Ops", password=PASSWORD,
                    role=Role.OPERATOR, now=datetime.now(UTC))  # fmt: skip
        db.commit()
    operator = _token(app, "ops-2fa@doorstep.test").json()["access_token"]
    refused = _call(app, "POST", TWO_FACTOR, operator, password=PASSWORD)
    assert refused.status_code == 403, refused.text
    assert _credential(app) is None


def test_wrong_set_up_codes_lock_the_account_whatever_the_address(
    standalone: Callable[..., Standalone],
) -> None:
    """A thief holding a resident's token, with a set-up waiting, cannot guess its code
    from many addresses: wrong codes at confirm count toward the account's code lock,
    as at sign-in, not only toward the per-address limit (set out of the way here)."""
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=1000))
    token = _resident(app, "api-2fa-confirm-lock@doorstep.test")
    secret = _secret(_call(app, "POST", TWO_FACTOR, token, password=PASSWORD))
    right = _code(app, secret)
    for _ in range(twofactor.MAX_FAILURES):
        refused = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=_wrong(right))
        assert refused.status_code == 422, refused.text
    locked = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=right)
    assert locked.status_code == 429 and _error(locked) == "code_locked", locked.text
    assert not twofactor_on(app)

    # The lock ends; the set-up still waits, and the app's code turns it on.
    on = _call(
        app, "POST", f"{TWO_FACTOR}/confirm", token,
        code=_code(app, secret, twofactor.LOCK_SECONDS + 1),
    )  # fmt: skip
    assert on.status_code == 200, on.text
    assert twofactor_on(app)


def test_a_right_set_up_code_clears_the_count(standalone: Callable[..., Standalone]) -> None:
    """Wrong set-up codes before the right one do not carry over to sign-in's codes."""
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=1000))
    email = "api-2fa-confirm-count@doorstep.test"
    token = _resident(app, email)
    secret = _secret(_call(app, "POST", TWO_FACTOR, token, password=PASSWORD))
    right = _code(app, secret)
    for _ in range(twofactor.MAX_FAILURES - 1):
        wrong = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=_wrong(right))
        assert wrong.status_code == 422, wrong.text
    assert _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=right).status_code == 200

    next_code = _code(app, secret, 30)
    assert _token(app, email, code=_wrong(next_code)).status_code == 401
    signed_in = _token(app, email, code=next_code)
    assert signed_in.status_code == 200, signed_in.text


def _history(app: Standalone, user_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The account's two-step records, oldest first: (action, actor, data)."""
    with _db(app) as db:
        rows = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == user_id, AuditEvent.action.like("account:totp%"))
            .order_by(AuditEvent.seq)
        ).all()
        return [(row.action, row.actor, dict(row.data)) for row in rows]


def _no_secrets(app: Standalone, *secrets: str) -> None:
    with _db(app) as db:
        stored = str([(row.action, row.data) for row in db.scalars(select(AuditEvent))])
    for secret in secrets:
        assert secret not in stored


def test_the_set_up_is_on_the_audit_log_refusals_too(
    standalone: Callable[..., Standalone],
) -> None:
    """A resident (or an operator after a takeover attempt) sees the whole set-up on the
    account's history: started, each wrong code (refused, yet recorded), the lock, the
    tries while locked, on and off; never the key, the otpauth URI or a code."""
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=1000))
    token = _resident(app, "api-2fa-audit@doorstep.test")
    started = _call(app, "POST", TWO_FACTOR, token, password=PASSWORD)
    secret = _secret(started)
    right = _code(app, secret)
    for _ in range(twofactor.MAX_FAILURES):
        wrong = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=_wrong(right))
        assert wrong.status_code == 422, wrong.text
    until = (app.clock.now() + timedelta(seconds=twofactor.LOCK_SECONDS)).isoformat()
    locked = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=right)
    assert locked.status_code == 429, locked.text
    confirming = _code(app, secret, twofactor.LOCK_SECONDS + 1)
    on = _call(app, "POST", f"{TWO_FACTOR}/confirm", token, code=confirming)
    assert on.status_code == 200, on.text
    closing = _code(app, secret, 30)
    off = _call(app, "DELETE", TWO_FACTOR, token, password=PASSWORD, code=closing)
    assert off.status_code == 204, off.text

    user_id = _user_id(app, "api-2fa-audit@doorstep.test")
    resident = f"resident:{user_id}"
    wrong_code = ("account:totp_setup:failed", resident, {**API_ORIGIN, "reason": "wrong_code"})
    assert _history(app, user_id) == [
        ("account:totp_setup:started", resident, API_ORIGIN),
        *[wrong_code] * twofactor.MAX_FAILURES,
        ("account:totp:locked", "system", {**API_ORIGIN, "until": until}),
        ("account:totp_setup:failed", resident, {**API_ORIGIN, "reason": "code_locked"}),
        ("account:totp:on", resident, API_ORIGIN),
        ("account:totp:off", resident, API_ORIGIN),
    ]
    uri = started.json()["otpauth_uri"]
    _no_secrets(app, started.json()["secret"], uri, right, _wrong(right), confirming, closing)


def _user_id(app: Standalone, email: str) -> str:
    with _db(app) as db:
        user_id = db.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id
