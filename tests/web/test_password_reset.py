""" "Forgot your password?" over HTTP on a frozen clock (the link read from the mail as
a real SMTP server received it): the answer is the same whether or not the email has
an account; the link's token is random, kept only as a digest, works once, for 30
minutes, and only the newest one; a reset ends every session and token of the account;
with two-step sign-in on it needs a code too; links are limited per account and per
address; refusals change nothing, and nothing secret reaches the audit log."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from doorstep.accounts import totp
from doorstep.accounts.models import PasswordReset, Role
from doorstep.accounts.service import create_user
from doorstep.accounts.signins import PAUSE_AFTER
from doorstep.audit.models import AuditEvent
from doorstep.notify.models import OutboxMessage

from .conftest import Standalone
from .support import PASSWORD, WebClient

NEW_PASSWORD = "a much longer passphrase 42"
FORGOT = "/password/forgot"
RESET = "/password/reset"
LINK_GONE = "This link is unknown, used or expired."
RESET_SUBJECT = "Choose a new Doorstep password"
_CSRF = re.compile(r'name="csrf_token" value="[^"]+"')


@contextmanager
def _db(app: Standalone) -> Iterator[Session]:
    engine = create_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _mails(app: Standalone, to: str, subject: str = RESET_SUBJECT) -> list[OutboxMessage]:
    """The mail with `subject` queued for `to`, oldest first (`_text` reads what was sent)."""
    with _db(app) as db:
        rows = db.scalars(
            select(OutboxMessage).where(OutboxMessage.target == to).order_by(OutboxMessage.id)
        )
        return [row for row in rows if row.payload["subject"] == subject]


def _text(row: OutboxMessage, app: Standalone) -> str:
    """The text of the mail sent for `row`, as its recipient got it."""
    mail = app.mail(row.event_id)
    assert (mail.to, mail.subject) == ([row.target], row.payload["subject"]), mail
    return mail.text


def _token(row: OutboxMessage, app: Standalone) -> str:
    text = _text(row, app)
    match = re.search(r"(\S+)/password/reset#([A-Za-z0-9_-]+)", text)
    assert match, text
    assert match.group(1) == app.settings.resolved_public_url  # never the request's Host
    return match.group(2)


def _records(app: Standalone, action: str) -> list[AuditEvent]:
    with _db(app) as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _everything_audited(app: Standalone) -> str:
    with _db(app) as db:
        return repr(
            [(e.actor, e.action, e.subject, e.data) for e in db.scalars(select(AuditEvent))]
        )


def _forgot(client: WebClient, email: str) -> httpx.Response:
    return client.post(FORGOT, {"email": email}, csrf_from=FORGOT)


def _reset(client: WebClient, token: str, password: str, code: str = "") -> httpx.Response:
    data = {"token": token, "password": password, **({"code": code} if code else {})}
    return client.post(RESET, data, csrf_from=RESET)


def _sign_in_status(app: Standalone, email: str, password: str) -> int:
    data = {"email": email, "password": password}
    return app.web().post("/signin", data, csrf_from="/signin").status_code


def _account(app: Standalone, email: str) -> WebClient:
    client = app.web()
    client.sign_up(email)
    client.sign_in(email)
    return client


def test_every_sign_in_page_links_to_forgot_password(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    client = app.web()
    for page in ("/signin", "/courier/signin", "/guest/signin"):
        assert f'href="{FORGOT}">Forgot your password?</a>' in client.get(page).text, page
    assert client.get(FORGOT).status_code == 200


def test_forgot_answers_alike_and_mails_a_single_use_link(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email, nobody = "forgetful@doorstep.test", "nobody@doorstep.test"
    signed_in = _account(app, email)
    api = httpx.post(f"{app.url}/v1/auth/token", timeout=30, data={
        "grant_type": "password", "username": email, "password": PASSWORD,
    }).json()["access_token"]  # fmt: skip

    # The same page, word for word, for an account and for no account.
    answers = [_forgot(app.web(), address) for address in (email, nobody)]
    assert [a.status_code for a in answers] == [200, 200]
    pages = [_CSRF.sub("", a.text).replace(address, "ADDRESS") for a, address in
             zip(answers, (email, nobody), strict=True)]  # fmt: skip
    assert pages[0] == pages[1]
    assert "If an account uses ADDRESS, we have sent it a link" in " ".join(pages[0].split())
    assert _mails(app, nobody) == []
    (not_sent,) = _records(app, "account:password_reset:not_sent")
    assert not_sent.subject == "unknown" and not_sent.data["reason"] == "unknown_account"
    assert nobody not in _everything_audited(app)  # an address that is no account is not kept

    # The link: a 256-bit token, in the fragment, of which only the digest is stored.
    (queued,) = _mails(app, email)
    token = _token(queued, app)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == 32
    with _db(app) as db:
        (row,) = db.scalars(select(PasswordReset)).all()
        assert row.digest == hashlib.sha256(token.encode()).hexdigest()
        assert token not in repr((row.digest, row.user_id))
        assert row.expires_at - row.created_at == timedelta(minutes=30)

    # Refusals change nothing: an unknown token, a password the sign-up rules refuse.
    client = app.web()
    bogus = _reset(client, "x" * 43, NEW_PASSWORD)
    assert bogus.status_code == 422 and LINK_GONE in bogus.text
    weak = _reset(client, token, "short")
    assert weak.status_code == 422 and "At least 10 characters." in weak.text
    assert f'value="{token}"' in weak.text  # still usable, without opening the email again
    assert _sign_in_status(app, email, PASSWORD) == 303
    assert signed_in.get("/homes").status_code == 200

    done = _reset(client, token, NEW_PASSWORD)
    assert done.status_code == 200, done.text
    assert "Your password is changed" in done.text and 'href="/signin"' in done.text
    assert _sign_in_status(app, email, PASSWORD) == 422
    assert _sign_in_status(app, email, NEW_PASSWORD) == 303
    # Every session and token from before has ended (the sign-in just above is new).
    assert signed_in.get("/homes").headers["location"] == "/signin"
    bearer = {"authorization": f"Bearer {api}"}
    assert httpx.get(f"{app.url}/v1/homes", headers=bearer, timeout=30).status_code == 401

    # Spent: the same link again changes nothing.
    again = _reset(app.web(), token, "yet another password 7")
    assert again.status_code == 422 and LINK_GONE in again.text
    assert _sign_in_status(app, email, NEW_PASSWORD) == 303
    with _db(app) as db:
        assert db.scalars(select(PasswordReset)).all() == []

    (changed,) = _records(app, "account:password:changed")
    assert changed.data["via"] == "password_reset" and changed.data["sessions_ended"] == 3
    assert [r.data["reason"] for r in _records(app, "account:password_reset:failed")] == [
        "bad_link",
        "bad_link",
    ]
    audited = _everything_audited(app)
    for secret in (token, PASSWORD, NEW_PASSWORD):
        assert secret not in audited
    assert _mails(app, email, "Your Doorstep password was changed") != []


def test_only_the_newest_link_works_and_only_for_30_minutes(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "twice@doorstep.test"
    _account(app, email)
    _forgot(app.web(), email)
    _forgot(app.web(), email)
    older, newer = (_token(row, app) for row in _mails(app, email))

    refused = _reset(app.web(), older, NEW_PASSWORD)
    assert refused.status_code == 422 and LINK_GONE in refused.text

    app.clock.set(app.clock.now() + timedelta(minutes=30))
    expired = _reset(app.web(), newer, NEW_PASSWORD)
    assert expired.status_code == 422 and LINK_GONE in expired.text
    assert [r.data["reason"] for r in _records(app, "account:password_reset:failed")] == [
        "bad_link",
        "expired",
    ]
    assert _sign_in_status(app, email, PASSWORD) == 303
    assert _sign_in_status(app, email, NEW_PASSWORD) == 422


def test_links_are_limited_per_account_and_per_address(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "flooded@doorstep.test"
    _account(app, email)

    # Three links an hour to one account; a fourth request is answered alike, sends nothing.
    for _ in range(4):
        assert _forgot(app.web(), email).status_code == 200
    assert len(_mails(app, email)) == 3
    (limited,) = _records(app, "account:password_reset:not_sent")
    assert limited.data["reason"] == "too_many"
    app.clock.set(app.clock.now() + timedelta(hours=1))
    _forgot(app.web(), email)
    assert len(_mails(app, email)) == 4

    # Ten requests a minute from one address, whatever the email; then 429, nothing sent.
    app.clock.set(app.clock.now() + timedelta(minutes=2))
    for number in range(10):
        assert _forgot(app.web(), f"someone-{number}@doorstep.test").status_code == 200
    refused = _forgot(app.web(), email)
    assert refused.status_code == 429 and "Too many attempts" in refused.text
    token = _token(_mails(app, email)[-1], app)
    assert _reset(app.web(), token, NEW_PASSWORD).status_code == 429
    assert len(_mails(app, email)) == 4
    assert _sign_in_status(app, email, NEW_PASSWORD) == 422


def test_with_two_step_sign_in_on_a_reset_needs_a_code_too(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "guarded@doorstep.test"
    client = _account(app, email)
    client.reauth("/account/security")
    page = client.post("/account/totp/setup", {}, csrf_from="/account/security")
    key = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page.text)
    assert key, page.text
    secret = base64.b32decode(key.group(1).replace(" ", ""))
    done = client.post("/account/totp/confirm", {"code": totp.totp(secret, app.clock.timestamp())},
                       csrf_from="/account/security")  # fmt: skip
    recovery = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.text)
    assert len(recovery) == 10

    _forgot(app.web(), email)
    (row,) = _mails(app, email)
    assert "you will also need a code" in _text(row, app)
    token = _token(row, app)

    # The mailbox alone is not enough: no code, or a wrong one, changes nothing and
    # leaves the link usable.
    app.clock.set(app.clock.now() + timedelta(seconds=30))
    right = totp.totp(secret, app.clock.timestamp())
    for code in ("", f"{(int(right) + 1) % 1_000_000:06d}"):
        refused = _reset(app.web(), token, NEW_PASSWORD, code)
        assert refused.status_code == 422 and "Two-step sign-in is on" in refused.text
    assert [r.data["reason"] for r in _records(app, "account:password_reset:failed")] == [
        "wrong_code",
        "wrong_code",
    ]
    assert _sign_in_status(app, email, PASSWORD) == 303  # to the code step: unchanged
    assert _reset(app.web(), token, NEW_PASSWORD, recovery[0]).status_code == 200
    assert _sign_in_status(app, email, NEW_PASSWORD) == 303
    assert _records(app, "account:recovery_code:used") != []


def test_a_courier_is_sent_back_to_the_courier_app(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "courier@doorstep.test"
    with _db(app) as db:
        create_user(db, email=email, name="Casey", password=PASSWORD, role=Role.COURIER,
                    now=app.clock.now())  # fmt: skip
        db.commit()
    _forgot(app.web(), email)
    done = _reset(app.web(), _token(_mails(app, email)[0], app), NEW_PASSWORD)
    assert done.status_code == 200 and 'href="/courier/signin"' in done.text


def test_a_reset_lifts_a_sign_in_pause_at_once(standalone: Callable[..., Standalone]) -> None:
    app = standalone()
    email = "besieged@doorstep.test"
    _account(app, email)
    for _ in range(PAUSE_AFTER):
        assert _sign_in_status(app, email, "a wrong guess, again") == 422
    assert _sign_in_status(app, email, PASSWORD) == 422  # paused: not even checked

    _forgot(app.web(), email)
    assert _reset(app.web(), _token(_mails(app, email)[0], app), NEW_PASSWORD).status_code == 200
    assert _sign_in_status(app, email, NEW_PASSWORD) == 303
