"""Passwords on the live service, on SQLite and PostgreSQL, with mail over real SMTP:
`POST /v1/me/password` needs the current password (and the code, with two-step sign-in
on), applies the sign-up rules, refuses with the API's error body and changes nothing,
and on success ends every other session and token while the asking token stays; the
owner is emailed. "Forgot your password?" mails a link that sets a new password once."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import select

from doorstep.accounts import totp, twofactor
from doorstep.accounts.models import User
from doorstep.audit.models import AuditEvent
from doorstep.clock import SystemClock
from doorstep.notify.models import OutboxMessage
from doorstep.settings import NotifySettings

if TYPE_CHECKING:
    from conftest import Mailbox

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a much longer passphrase 42"
CHANGED = "Your Doorstep password was changed"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


def _resident(live: Any, email: str) -> None:
    body = {"email": email, "name": "Pat", "password": PASSWORD}
    assert httpx.post(f"{live.url}/v1/residents", json=body, timeout=30).status_code == 201


def _token(live: Any, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
    form = {"grant_type": "password", "username": email, "password": password, **extra}
    return httpx.post(f"{live.url}/v1/auth/token", data=form, timeout=30)


def _works(live: Any, token: str) -> bool:
    response = httpx.get(f"{live.url}/v1/homes", headers=_bearer(token), timeout=30)
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _change(live: Any, token: str | None, **body: str) -> httpx.Response:
    headers = _bearer(token) if token else {}
    return httpx.post(f"{live.url}/v1/me/password", json=body, headers=headers, timeout=30)


def _actions(live: Any, prefix: str) -> list[tuple[str, Any]]:
    with live.sessions() as session:
        rows = session.execute(
            select(AuditEvent.action, AuditEvent.data)
            .where(AuditEvent.action.like(f"{prefix}%"))
            .order_by(AuditEvent.seq)
        ).all()
    return [(action, data) for action, data in rows]


def _mail_text(box: Mailbox, to: str, subject: str) -> str:
    assert subject in box.wait_subjects([subject]), box.subjects()
    for recipients, message in box.messages:
        if str(message["Subject"]) == subject and to in recipients:
            payload = message.get_payload(decode=True)
            return payload.decode() if isinstance(payload, bytes) else str(payload)
    raise AssertionError(f"no {subject!r} to {to}")


def test_changing_the_password_by_the_api(live: Any, mailbox: tuple[Mailbox, int]) -> None:
    email = "api-changer@doorstep.test"
    _resident(live, email)
    asking = _token(live, email).json()["access_token"]
    other = _token(live, email).json()["access_token"]

    # Refusals: no token, a wrong current password, a new one the sign-up rules refuse.
    assert _change(live, None, current_password=PASSWORD, new_password=NEW_PASSWORD
                   ).status_code == 401  # fmt: skip
    wrong = _change(live, asking, current_password="not the password", new_password=NEW_PASSWORD)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "not_authenticated"
    assert "not changed" in wrong.json()["error"]["message"]
    short = _change(live, asking, current_password=PASSWORD, new_password="short")
    assert short.status_code == 422 and short.json()["error"]["code"] == "invalid_request"
    assert _works(live, asking) and _works(live, other)
    assert _token(live, email).status_code == 200  # the old password still works
    assert _actions(live, "account:password:") == []
    assert [(a, d["via"], d["reason"]) for a, d in _actions(live, "account:reauth")] == [
        ("account:reauth_failed", "api_password_change", "wrong_credentials")
    ]

    changed = _change(live, asking, current_password=PASSWORD, new_password=NEW_PASSWORD)
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"sessions_ended": 2}  # `other`, and the one just above
    assert _works(live, asking)
    assert not _works(live, other)
    assert _token(live, email).status_code == 401
    assert _token(live, email, NEW_PASSWORD).status_code == 200
    ((_, data),) = _actions(live, "account:password:changed")
    assert data["via"] == "api_password_change" and data["sessions_ended"] == 2

    text = _mail_text(mailbox[0], email, CHANGED)
    assert "signed out" in text and NEW_PASSWORD not in text and PASSWORD not in text


def test_with_two_step_sign_in_on_the_api_needs_the_code(live: Any) -> None:
    email = "api-coded@doorstep.test"
    _resident(live, email)
    key = live.runtime.totp_key
    with live.sessions() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        now = SystemClock().now()
        secret = twofactor.start_enrollment(session, user=user, now=now, key=key)
        codes = twofactor.confirm(
            session, user=user, code=totp.totp(secret, now.timestamp()), now=now, key=key
        )
        session.commit()
    assert codes is not None
    token = _token(live, email, code=codes[0]).json()["access_token"]

    # No code, then wrong codes until codes are locked: the right one is refused then too.
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert _change(live, token, **body).status_code == 401
    for _ in range(twofactor.MAX_FAILURES):
        assert _change(live, token, **body, code="000000").status_code == 401
    locked = _change(live, token, **body, code=codes[1])
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "code_locked"
    assert _token(live, email, NEW_PASSWORD, code=codes[2]).status_code == 401
    assert _actions(live, "account:password:") == []


def _web_form(client: httpx.Client, page: str, path: str, data: dict[str, str]) -> httpx.Response:
    csrf = _CSRF.search(client.get(page).text)
    assert csrf, page
    return client.post(path, data={**data, "csrf_token": csrf.group(1)})


def test_a_forgotten_password_is_reset_from_the_emailed_link(
    live: Any, mailbox: tuple[Mailbox, int]
) -> None:
    email, nobody = "forgot-smtp@doorstep.test", "no-account@doorstep.test"
    _resident(live, email)
    before = _token(live, email).json()["access_token"]
    with httpx.Client(base_url=live.url, timeout=30) as browser:
        for address in (email, nobody):
            answer = _web_form(browser, "/password/forgot", "/password/forgot", {"email": address})
            assert answer.status_code == 200
        with live.sessions() as session:
            queued = session.scalars(
                select(OutboxMessage.target).where(OutboxMessage.event_type.like("account.%"))
            ).all()
        assert queued == [email]

        text = _mail_text(mailbox[0], email, "Choose a new Doorstep password")
        match = re.search(r"/password/reset#([A-Za-z0-9_-]{43})\b", text)
        assert match, text
        data = {"token": match.group(1), "password": NEW_PASSWORD}
        done = _web_form(browser, "/password/reset", "/password/reset", data)
        assert done.status_code == 200 and "Your password is changed" in done.text
        again = _web_form(browser, "/password/reset", "/password/reset", data)
        assert again.status_code == 422

    assert not _works(live, before)
    assert _token(live, email).status_code == 401
    assert _token(live, email, NEW_PASSWORD).status_code == 200
    assert "signed out" in _mail_text(mailbox[0], email, CHANGED)
