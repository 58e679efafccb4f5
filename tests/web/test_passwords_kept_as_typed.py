"""A password is kept exactly as typed wherever it is chosen: sign-in compares it
unstripped, so a sign-up that stripped spaces from its ends would store a password the
person never typed and could not sign in with. Emails and names are still tidied."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from doorstep.accounts.models import Role
from doorstep.accounts.service import create_user

from .conftest import Standalone

SPACED = "  correct horse battery "
STRIPPED = SPACED.strip()


def _token(app: Standalone, email: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": email, "password": password}
    return httpx.post(f"{app.url}/v1/auth/token", data=form, timeout=30)


def test_api_sign_up_keeps_the_password_as_typed(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    body = {"email": "  Spaces@Doorstep.test ", "name": " Pat ", "password": SPACED}
    created = httpx.post(f"{app.url}/v1/residents", json=body, timeout=30)
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "spaces@doorstep.test"
    assert created.json()["name"] == "Pat"

    assert _token(app, "spaces@doorstep.test", SPACED).status_code == 200
    assert _token(app, "spaces@doorstep.test", STRIPPED).status_code == 401


def test_web_sign_up_keeps_the_password_as_typed(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    client = app.web()
    client.sign_up("web-spaces@doorstep.test", password=SPACED)

    client.sign_in("web-spaces@doorstep.test", password=SPACED)
    assert client.get("/homes").status_code == 200
    wrong = app.web().post(
        "/signin",
        {"email": "web-spaces@doorstep.test", "password": STRIPPED},
        csrf_from="/signin",
    )
    assert wrong.status_code == 422 and "Wrong email or password." in wrong.text


def test_a_courier_created_by_a_carrier_keeps_the_password_as_typed(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    engine = create_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            create_user(session, email="ops@doorstep.test", name="Ops", password=SPACED,
                        role=Role.OPERATOR, now=datetime.now(UTC))  # fmt: skip
            session.commit()
    finally:
        engine.dispose()
    operator = _token(app, "ops@doorstep.test", SPACED).json()["access_token"]
    headers = {"authorization": f"Bearer {operator}"}
    carrier = httpx.post(
        f"{app.url}/v1/carriers", json={"name": "Parcels"}, headers=headers, timeout=30
    ).json()
    form = {"grant_type": "client_credentials", "client_id": carrier["client_id"],
            "client_secret": carrier["client_secret"]}  # fmt: skip
    client_token = httpx.post(f"{app.url}/v1/auth/token", data=form, timeout=30)
    body = {"email": "rider@doorstep.test", "name": "Rider", "password": SPACED}
    created = httpx.post(
        f"{app.url}/v1/couriers",
        json=body,
        headers={"authorization": f"Bearer {client_token.json()['access_token']}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text

    assert _token(app, "rider@doorstep.test", SPACED).status_code == 200
    assert _token(app, "rider@doorstep.test", STRIPPED).status_code == 401


def test_a_password_sent_again_to_revoke_everything_is_compared_as_typed(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    body = {"email": "owner-spaces@doorstep.test", "name": "Owner", "password": SPACED}
    assert httpx.post(f"{app.url}/v1/residents", json=body, timeout=30).status_code == 201
    token = _token(app, "owner-spaces@doorstep.test", SPACED).json()["access_token"]
    headers = {"authorization": f"Bearer {token}"}
    home = httpx.post(
        f"{app.url}/v1/homes",
        json={"name": "Home", "address": "1 Road", "latitude": 48.0, "longitude": 2.0,
              "timezone": "Europe/Paris"},
        headers=headers,
        timeout=30,
    )  # fmt: skip
    assert home.status_code == 201, home.text
    url = f"{app.url}/v1/homes/{home.json()['id']}/revoke-everything"

    stripped = httpx.post(url, json={"password": STRIPPED}, headers=headers, timeout=30)
    assert stripped.status_code == 401, stripped.text
    typed = httpx.post(url, json={"password": SPACED}, headers=headers, timeout=30)
    assert typed.status_code == 200, typed.text
    assert typed.json() == {"revoked": 0}
