"""Changing the password while signed in, and turning on two-step sign-in, over HTTP on
a frozen clock: the current password (and a code, when two-step sign-in is on) is needed,
the sign-up rules apply, a refusal changes nothing, and a change ends every other
session and API token of the account while this browser carries on with a fresh
session; the owner is emailed (over real SMTP); nothing secret reaches the audit log or
the mail. Turning two-step sign-in on ends the other sessions too, keeping this one."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from doorstep.accounts import totp
from doorstep.audit.models import AuditEvent
from doorstep.notify.models import OutboxMessage

from .conftest import Standalone
from .support import PASSWORD, WebClient

NEW_PASSWORD = "a much longer passphrase 42"
SECURITY = "/account/security"
CHANGE = "/account/password"


@contextmanager
def _db(app: Standalone) -> Iterator[Session]:
    engine = create_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _records(app: Standalone, action: str) -> list[AuditEvent]:
    with _db(app) as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _everything_audited(app: Standalone) -> str:
    with _db(app) as db:
        return repr([(e.action, e.data) for e in db.scalars(select(AuditEvent))])


def _mails(app: Standalone, to: str) -> list[OutboxMessage]:
    """The mail queued for `to`, oldest first (its text is read from the SMTP server)."""
    with _db(app) as db:
        rows = db.scalars(
            select(OutboxMessage).where(OutboxMessage.target == to).order_by(OutboxMessage.id)
        )
        return list(rows)


def _api_token(app: Standalone, email: str, password: str = PASSWORD) -> httpx.Response:
    form = {"grant_type": "password", "username": email, "password": password}
    return httpx.post(f"{app.url}/v1/auth/token", data=form, timeout=30)


def _api_works(app: Standalone, token: str) -> bool:
    response = httpx.get(
        f"{app.url}/v1/homes", headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def _signed_in_on(client: WebClient) -> bool:
    response = client.get(SECURITY)
    assert response.status_code in (200, 303), response.status_code
    return response.status_code == 200


def _change(client: WebClient, current: str, new: str, code: str = "") -> httpx.Response:
    data = {"current_password": current, "new_password": new, **({"code": code} if code else {})}
    return client.post(CHANGE, data, csrf_from=CHANGE)


def _sign_in_status(app: Standalone, email: str, password: str) -> int:
    client = app.web()
    data = {"email": email, "password": password}
    return client.post("/signin", data, csrf_from="/signin").status_code


def _turn_on_two_step(app: Standalone, client: WebClient) -> tuple[bytes, str]:
    """The app's key, and the page that confirmed it."""
    client.reauth(SECURITY)
    page = client.post("/account/totp/setup", {}, csrf_from=SECURITY)
    match = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page.text)
    assert match, page.text
    key = match.group(1).replace(" ", "")
    secret = base64.b32decode(key + "=" * (-len(key) % 8))
    code = totp.totp(secret, app.clock.timestamp())
    done = client.post("/account/totp/confirm", {"code": code}, csrf_from=SECURITY)
    assert done.status_code == 200, done.text
    return secret, " ".join(done.text.split())


def test_a_password_change_ends_every_other_session_and_token(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "changer@doorstep.test"
    here, elsewhere = app.web(), app.web()
    here.sign_up(email)
    here.sign_in(email)
    elsewhere.sign_in(email)
    api = _api_token(app, email).json()["access_token"]
    old_cookie = here.http.cookies["doorstep_session"]

    # The security page leads to the form.
    assert f'href="{CHANGE}"' in here.get(SECURITY).text

    # Refusals change nothing: a wrong current password (recorded as a failed
    # re-authentication), a new password the sign-up rules refuse, a missing CSRF token.
    wrong = _change(here, "not my password at all", NEW_PASSWORD)
    assert wrong.status_code == 422 and "That is not your current password." in wrong.text
    short = _change(here, PASSWORD, "short")
    assert short.status_code == 422 and "At least 10 characters." in short.text
    forged = here.post(CHANGE, {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                       csrf_from=None)  # fmt: skip
    assert forged.status_code == 403
    assert _signed_in_on(elsewhere) and _api_works(app, api)
    assert [r.data["via"] for r in _records(app, "account:reauth_failed")] == ["password_change"]
    assert _records(app, "account:password:changed") == []
    assert _mails(app, email) == []

    app.clock.set(app.clock.now() + timedelta(minutes=2))  # "last seen" is due a write
    changed = _change(here, PASSWORD, NEW_PASSWORD)
    assert changed.status_code == 303, changed.text
    assert changed.headers["location"] == f"{SECURITY}?notice=password-changed"
    page = here.get(changed.headers["location"])
    assert page.status_code == 200 and "Your password is changed." in page.text

    # This browser carries on with a new session; a copy of its old cookie is worth
    # nothing, and neither is any other session or token of the account.
    assert here.http.cookies["doorstep_session"] != old_cookie
    assert not _signed_in_on(app.web().use_session(old_cookie))
    assert not _signed_in_on(elsewhere)
    assert not _api_works(app, api)
    assert _sign_in_status(app, email, PASSWORD) == 422
    assert _sign_in_status(app, email, NEW_PASSWORD) == 303

    (record,) = _records(app, "account:password:changed")
    assert record.subject == record.actor.split(":")[1]
    assert record.data["via"] == "password_change"
    assert record.data["sessions_ended"] == 3  # both browsers and the API token
    audited = _everything_audited(app)
    assert PASSWORD not in audited and NEW_PASSWORD not in audited
    (row,) = _mails(app, email)
    assert row.payload["subject"] == "Your Doorstep password was changed"
    mail = app.mail(row.event_id)
    assert (mail.to, mail.subject) == ([email], row.payload["subject"])
    assert NEW_PASSWORD not in mail.text


def test_with_two_step_sign_in_on_the_change_needs_a_code(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "coded-changer@doorstep.test"
    client = app.web()
    client.sign_up(email)
    client.sign_in(email)
    secret, _page = _turn_on_two_step(app, client)
    assert 'id="code"' in client.get(CHANGE).text

    app.clock.set(app.clock.now() + timedelta(seconds=30))
    right = totp.totp(secret, app.clock.timestamp())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for code in ("", wrong):
        refused = _change(client, PASSWORD, NEW_PASSWORD, code)
        assert refused.status_code == 422 and "That code is not right" in refused.text
    assert _records(app, "account:password:changed") == []
    assert [r.data["reason"] for r in _records(app, "account:reauth_failed")] == [
        "wrong_code",
        "wrong_code",
    ]
    assert _change(client, PASSWORD, NEW_PASSWORD, right).status_code == 303
    assert _sign_in_status(app, email, NEW_PASSWORD) == 303  # on to the code step


def test_turning_on_two_step_sign_in_ends_the_other_sessions_and_keeps_this_one(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "securer@doorstep.test"
    here, elsewhere = app.web(), app.web()
    here.sign_up(email)
    here.sign_in(email)
    elsewhere.sign_in(email)
    api = _api_token(app, email).json()["access_token"]

    # Starting the setup, or a wrong first code, ends nothing.
    here.reauth(SECURITY)
    here.post("/account/totp/setup", {}, csrf_from=SECURITY)
    refused = here.post("/account/totp/confirm", {"code": "000000"}, csrf_from=SECURITY)
    assert refused.status_code == 422
    assert _signed_in_on(elsewhere) and _api_works(app, api)

    _secret, page = _turn_on_two_step(app, here)
    assert "Every other browser, phone and API token of this account was signed out" in page
    assert _signed_in_on(here)
    assert not _signed_in_on(elsewhere)
    assert not _api_works(app, api)
    (record,) = _records(app, "account:sessions:revoked")
    assert record.data == {"sessions": 2, "kept_current": True, "why": "totp_on"}
