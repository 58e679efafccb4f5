"""The account security page's two-step set-up: wrong codes at its confirm count toward
the account's code lock, as at sign-in (`accounts.twofactor`); locked, the page says so
(429) on the set-up form, which waits for the lock to end. Every step is on the
account's audit log, the refused ones too, without the key or a code."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep import db
from doorstep.accounts import totp, twofactor
from doorstep.accounts.models import User
from doorstep.audit.models import AuditEvent
from doorstep.settings import AuthSettings

from .conftest import Standalone
from .support import WebClient

SECURITY = "/account/security"


def test_wrong_set_up_codes_lock_the_account_codes(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    client = app.web()
    client.sign_up("web-2fa-confirm-lock@doorstep.test")
    client.sign_in("web-2fa-confirm-lock@doorstep.test")
    client.reauth(SECURITY)
    page = client.post("/account/totp/setup", {}, csrf_from=SECURITY)
    match = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page.text)
    assert match, page.text
    key = match.group(1).replace(" ", "")
    secret = base64.b32decode(key + "=" * (-len(key) % 8))
    right = totp.totp(secret, app.clock.timestamp())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    for _ in range(twofactor.MAX_FAILURES):
        refused = client.post("/account/totp/confirm", {"code": wrong}, csrf_from=SECURITY)
        assert refused.status_code == 422, refused.text
    locked = client.post("/account/totp/confirm", {"code": right}, csrf_from=SECURITY)
    assert locked.status_code == 429, locked.text
    assert "too many wrong codes" in locked.text.lower()
    assert f'id="totp-key">{match.group(1)}<' in locked.text  # the set-up form, not a dead end

    app.clock.set(app.clock.now() + timedelta(seconds=twofactor.LOCK_SECONDS + 1))
    client.reauth(SECURITY)
    code = totp.totp(secret, app.clock.timestamp())
    done = client.post("/account/totp/confirm", {"code": code}, csrf_from=SECURITY)
    assert done.status_code == 200, done.text
    assert "Save your recovery codes" in done.text


def _start(client: WebClient, email: str) -> tuple[str, bytes]:
    """Signed up, signed in and re-authenticated: the set-up page's key, as shown and
    decoded."""
    client.sign_up(email)
    client.sign_in(email)
    client.reauth(SECURITY)
    page = client.post("/account/totp/setup", {}, csrf_from=SECURITY)
    match = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page.text)
    assert match, page.text
    key = match.group(1).replace(" ", "")
    return key, base64.b32decode(key + "=" * (-len(key) % 8))


@contextmanager
def _db(app: Standalone) -> Iterator[Session]:
    engine = db.make_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _history(app: Standalone, user_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The account's two-step records, oldest first: (action, actor, data)."""
    with _db(app) as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == user_id, AuditEvent.action.like("account:totp%"))
            .order_by(AuditEvent.seq)
        ).all()
        return [(row.action, row.actor, dict(row.data)) for row in rows]


def _user_id(app: Standalone, email: str) -> str:
    with _db(app) as session:
        user_id = session.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


def _audit_text(app: Standalone) -> str:
    """Every record's action and data, as one text to search for what must not be there."""
    with _db(app) as session:
        return str([(row.action, row.data) for row in session.scalars(select(AuditEvent))])


def test_the_set_up_page_is_on_the_audit_log_refusals_too(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=1000))
    client = app.web()
    email = "web-2fa-audit@doorstep.test"
    key, secret = _start(client, email)
    right = totp.totp(secret, app.clock.timestamp())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(twofactor.MAX_FAILURES):
        refused = client.post("/account/totp/confirm", {"code": wrong}, csrf_from=SECURITY)
        assert refused.status_code == 422, refused.text
    until = (app.clock.now() + timedelta(seconds=twofactor.LOCK_SECONDS)).isoformat()
    locked = client.post("/account/totp/confirm", {"code": right}, csrf_from=SECURITY)
    assert locked.status_code == 429, locked.text

    app.clock.set(app.clock.now() + timedelta(seconds=twofactor.LOCK_SECONDS + 1))
    client.reauth(SECURITY)
    confirming = totp.totp(secret, app.clock.timestamp())
    done = client.post("/account/totp/confirm", {"code": confirming}, csrf_from=SECURITY)
    assert done.status_code == 200, done.text
    app.clock.set(app.clock.now() + timedelta(seconds=30))
    reauth_code = totp.totp(secret, app.clock.timestamp())
    client.reauth(SECURITY, code=reauth_code)
    for _ in range(2):  # the second time it is already off: nothing more to record
        off = client.post("/account/totp/disable", {}, csrf_from=SECURITY)
        assert off.status_code == 303, off.text

    user_id = _user_id(app, email)
    resident = f"resident:{user_id}"
    web = {"via": "web", "client": "127.0.0.1"}  # where each change came from
    wrong_code = ("account:totp_setup:failed", resident, {**web, "reason": "wrong_code"})
    assert _history(app, user_id) == [
        ("account:totp_setup:started", resident, web),
        *[wrong_code] * twofactor.MAX_FAILURES,
        ("account:totp:locked", "system", {**web, "until": until}),
        ("account:totp_setup:failed", resident, {**web, "reason": "code_locked"}),
        ("account:totp:on", resident, web),
        ("account:totp:off", resident, web),
    ]
    stored = _audit_text(app)
    for secret_text in (key, right, wrong, confirming, reauth_code, "otpauth"):
        assert secret_text not in stored
