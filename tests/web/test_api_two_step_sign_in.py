"""`POST /v1/auth/token` (the password grant) for a resident with two-step sign-in on:
the password alone must not earn a bearer token, or the second factor is bypassed by
signing in through the API instead of the web form (a resident's token can make keypad
codes, manage the home, read its audit log)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from doorstep.accounts import totp

from .conftest import Standalone
from .support import PASSWORD
from .test_account_security import _signed_in, _turn_on


def test_the_api_password_grant_asks_for_the_code_when_two_step_sign_in_is_on(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    email = "api-twostep@doorstep.test"
    client = _signed_in(app, email)
    secret, _codes = _turn_on(app, client)
    form = {"grant_type": "password", "username": email, "password": PASSWORD}

    alone = client.http.post("/v1/auth/token", data=form)
    assert alone.status_code == 401, alone.text
    assert "access_token" not in alone.text

    app.clock.set(app.clock.now() + timedelta(seconds=30))  # the confirming code is spent
    right = totp.totp(secret, app.clock.timestamp())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    refused = client.http.post("/v1/auth/token", data={**form, "code": wrong})
    assert refused.status_code == 401, refused.text
    issued = client.http.post("/v1/auth/token", data={**form, "code": right})
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    homes = client.http.get("/v1/homes", headers={"authorization": f"Bearer {token}"})
    assert homes.status_code == 200
    replay = client.http.post("/v1/auth/token", data={**form, "code": right})
    assert replay.status_code == 401, replay.text  # a code is good once
