"""Confirming two-step sign-in needs a recent re-authentication, as starting it does: a
stolen session cookie alone, while the owner's set-up waits, neither shows the waiting key
nor turns two-step sign-in on (which would hand out the recovery codes)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from doorstep.accounts import totp
from doorstep.accounts.models import RecoveryCode, TotpCredential
from doorstep.web.reauth import REAUTH_SECONDS

from .conftest import Standalone
from .support import WebClient

EMAIL = "waiting@doorstep.test"
TO_REAUTH = "/account/reauth?next=/account/security"


def _key(page: str) -> bytes:
    match = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page)
    assert match, "no key on the page"
    key = match.group(1).replace(" ", "")
    return base64.b32decode(key + "=" * (-len(key) % 8))


def _two_step_state(app: Standalone) -> tuple[bool, int]:
    """Whether the credential is confirmed, and how many recovery codes exist."""
    engine = create_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as db:
            confirmed = db.scalar(select(TotpCredential.confirmed_at)) is not None
            codes = db.scalar(select(func.count()).select_from(RecoveryCode)) or 0
    finally:
        engine.dispose()
    return confirmed, codes


def _wrong(secret: bytes, at: float) -> str:
    """A code the app does not show around `at`."""
    return next(
        code
        for code in (f"{n:06d}" for n in range(1_000_000))
        if totp.matching_step(secret, code, at) is None
    )


def _confirm(client: WebClient, code: str, referer: str = "") -> httpx.Response:
    headers = {"referer": str(client.http.base_url.join(referer))} if referer else {}
    form = {"code": code, "csrf_token": client.csrf("/account/security")}
    return client.http.post("/account/totp/confirm", data=form, headers=headers)


def test_a_stolen_session_cannot_finish_a_waiting_set_up(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    owner = app.web()
    owner.sign_up(EMAIL)
    owner.sign_in(EMAIL)
    owner.reauth("/account/security")
    page = owner.post("/account/totp/setup", {}, csrf_from="/account/security")
    assert page.status_code == 200, page.text
    secret = _key(page.text)
    shown_key = totp.grouped(totp.base32(secret))

    # The owner leaves the set-up waiting; later, someone holds the session's cookie.
    app.clock.set(app.clock.now() + timedelta(seconds=REAUTH_SECONDS + 1))
    thief = app.web().use_session(owner.http.cookies["doorstep_session"])
    right = totp.totp(secret, app.clock.timestamp())
    wrong = _wrong(secret, app.clock.timestamp())

    # A wrong code does not show the waiting key again: it asks for the password first,
    # and comes back to the security page (the set-up page answered a POST: no page to
    # come back to), whichever page the form was on.
    for referer in ("", "/account/totp/setup", "/account/totp/confirm"):
        refused = _confirm(thief, wrong, referer)
        assert refused.status_code == 303, refused.text
        assert refused.headers["location"] == TO_REAUTH
        assert shown_key not in refused.text
    # Nor does the right code turn it on.
    refused = _confirm(thief, right)
    assert refused.status_code == 303 and refused.headers["location"] == TO_REAUTH
    assert "<code>" not in refused.text
    assert _two_step_state(app) == (False, 0)
    assert owner.get("/homes").status_code == 200  # no session was ended

    # The owner, with the password again, finishes it (with the same code).
    owner.reauth("/account/security")
    done = _confirm(owner, right)
    assert done.status_code == 200, done.text
    assert len(re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.text)) == 10
    assert _two_step_state(app) == (True, 10)


def test_a_wrong_code_shows_the_waiting_key_again_only_while_recent(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    owner = app.web()
    owner.sign_up(EMAIL)
    owner.sign_in(EMAIL)
    owner.reauth("/account/security")
    page = owner.post("/account/totp/setup", {}, csrf_from="/account/security")
    secret = _key(page.text)

    app.clock.set(app.clock.now() + timedelta(seconds=REAUTH_SECONDS))  # the last second
    wrong = _wrong(secret, app.clock.timestamp())
    again = _confirm(owner, wrong)
    assert again.status_code == 422 and "That code is not right" in again.text
    assert _key(again.text) == secret
    app.clock.set(app.clock.now() + timedelta(seconds=1))
    late = _confirm(owner, wrong)
    assert late.status_code == 303 and late.headers["location"] == TO_REAUTH
    assert _two_step_state(app) == (False, 0)
