"""`POST /v1/residents` (API sign-up) is limited per client address (the sign-in limiter's
allowance, counted apart from sign-in attempts), so a taken email (409) cannot be asked
about as fast as anyone likes; and a taken email costs the same password hashing as a new
account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from argon2 import PasswordHasher

from doorstep.settings import AuthSettings

from .conftest import Standalone
from .support import PASSWORD

PER_MINUTE = 6  # max_login_failures_per_minute=1: six attempts a minute from one client


def _sign_up(http: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return http.post(
        "/v1/residents", json={"email": email, "name": "Resident", "password": password}
    )


def test_api_sign_up_is_rate_limited_per_client(standalone: Callable[..., Standalone]) -> None:
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=1))
    http = app.web().http
    assert _sign_up(http, "taken@doorstep.test").status_code == 201
    for n in range(PER_MINUTE - 1):
        assert _sign_up(http, "taken@doorstep.test").status_code == 409, n

    refused = _sign_up(http, "new@doorstep.test")
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"
    assert _sign_up(http, "taken@doorstep.test").status_code == 429  # says nothing of it
    # Signing in from there is another count: the new resident is not locked out by it.
    form = {"grant_type": "password", "username": "taken@doorstep.test", "password": PASSWORD}
    assert http.post("/v1/auth/token", data=form).status_code == 200

    # Nothing was created meanwhile; a minute on, the address may try again.
    app.clock.set(app.clock.now() + timedelta(seconds=61))
    assert _sign_up(http, "new@doorstep.test").status_code == 201


def test_a_taken_email_costs_the_same_hashing_as_a_new_one(
    standalone: Callable[..., Standalone], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = standalone()
    http = app.web().http
    hashed: list[str] = []
    real_hash = PasswordHasher.hash

    def counting(self: PasswordHasher, password: str | bytes, *, salt: bytes | None = None) -> str:
        hashed.append(password if isinstance(password, str) else password.decode())
        return real_hash(self, password, salt=salt)

    monkeypatch.setattr(PasswordHasher, "hash", counting)
    assert _sign_up(http, "first@doorstep.test", "first password").status_code == 201
    assert _sign_up(http, "first@doorstep.test", "second password").status_code == 409
    assert hashed == ["first password", "second password"]
