"""A guest invited twice before accepting gets two invitation emails. Once they have
accepted one (and so chosen their password), whoever holds the other link (a forwarded
email, a shared phone) must not be able to choose a new password and take the account
over: that invitation is accepted only with the guest's own password, which it leaves as
it is. A refusal changes nothing, and is on the audit log as a wrong password for the
account (counting toward its sign-in pause), through the API and the guest web app
alike."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from doorstep import demo
from doorstep.accounts import passwords, signins
from doorstep.accounts.models import User
from doorstep.audit.models import AuditEvent
from doorstep.settings import NotifySettings
from doorstep.web import install

if TYPE_CHECKING:
    from conftest import Mailbox

EMAIL = "ana@example.org"
PASSWORD = "guest-password-1"
THIEF_PASSWORD = "thief-password-1"
_TOKEN = re.compile(r"/guest/accept#([A-Za-z0-9_-]+)")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


@pytest.fixture
def extend_app() -> Callable[[FastAPI], None]:
    return install  # the guest web app's /guest/accept, as the mailed link opens it


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


def invited_twice(world: demo.World, box: Mailbox) -> list[str]:
    """The resident gives Ana two accesses by the app before she accepts either: two
    invitation emails. Returns both links' tokens."""
    home = world.homes[0]
    for label in ("Ana", "Ana, weekends"):
        body = {"access_point": "front", "label": label, "kind": "always", "email": EMAIL}
        home.resident.call("POST", f"/v1/homes/{home.id}/grants", 201, json=body)
    deadline = time.monotonic() + 20
    with box.changed:
        while len(tokens := _tokens(box)) < 2 and (left := deadline - time.monotonic()) > 0:
            box.changed.wait(left)
    assert len(tokens) == 2, box.subjects()
    return tokens


def _tokens(box: Mailbox) -> list[str]:
    texts = [m.get_payload(decode=True).decode() for to, m in box.messages if EMAIL in to]
    return [match.group(1) for text in texts if (match := _TOKEN.search(text))]


def accept_by_api(url: str, token: str, password: str, name: str | None = None) -> httpx.Response:
    with demo.Api(url) as anonymous:
        return anonymous.http.post(
            "/v1/invitations/accept", json={"token": token, "password": password, "name": name}
        )


def sign_in_status(url: str, password: str) -> int:
    form = {"grant_type": "password", "username": EMAIL, "password": password}
    with httpx.Client(base_url=url) as client:
        return client.post("/v1/auth/token", data=form).status_code


def ana(live: Any) -> User:
    with live.sessions() as session:
        user = session.scalar(select(User).where(User.email == EMAIL))
        assert user is not None
        return user


def refusals(live: Any, user_id: str) -> list[dict[str, Any]]:
    """The account's refused password checks on the audit log."""
    with live.sessions() as session:
        return [
            dict(data)
            for data in session.scalars(
                select(AuditEvent.data).where(
                    AuditEvent.action == "account:signin_failed", AuditEvent.subject == user_id
                )
            )
        ]


def test_an_older_invitation_cannot_set_a_new_password_through_the_api(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], stack: ExitStack
) -> None:
    url = live.url
    first, second = invited_twice(world, mailbox[0])
    assert accept_by_api(url, first, PASSWORD, name="Ana").status_code == 200
    signed_in = stack.enter_context(
        demo.Api.login(url, grant_type="password", username=EMAIL, password=PASSWORD)
    )
    before = ana(live)

    taken = accept_by_api(url, second, THIEF_PASSWORD, name="Mallory")
    assert taken.status_code == 401
    assert taken.json()["error"]["code"] == "existing_password_required"
    assert refusals(live, before.id) == [
        {"via": "api", "client": "127.0.0.1", "reason": "wrong_credentials"}
    ]
    after = ana(live)
    assert (after.password_hash, after.name) == (before.password_hash, "Ana")
    assert sign_in_status(url, THIEF_PASSWORD) == 401
    assert len(signed_in.call("GET", "/v1/me/grants")) == 2  # her session goes on

    # Ana herself opens the other link: her own password accepts it and keeps it.
    assert accept_by_api(url, second, PASSWORD).status_code == 200
    assert ana(live).password_hash == before.password_hash
    assert sign_in_status(url, PASSWORD) == 200
    assert accept_by_api(url, second, PASSWORD).status_code == 401  # used now


def _accept_on_the_web(web: httpx.Client, token: str, password: str) -> httpx.Response:
    page = web.get("/guest/accept")
    csrf = _CSRF.search(page.text)
    assert csrf, page.text
    form = {"csrf_token": csrf.group(1), "token": token, "password": password, "name": "Mallory"}
    return web.post("/guest/accept", data=form)


def test_an_older_invitation_cannot_set_a_new_password_on_the_guest_web_app(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], stack: ExitStack
) -> None:
    url = live.url
    first, second = invited_twice(world, mailbox[0])
    ana_web = stack.enter_context(httpx.Client(base_url=url))
    assert _accept_on_the_web(ana_web, first, PASSWORD).status_code == 303  # signed in
    before = ana(live)

    thief = stack.enter_context(httpx.Client(base_url=url))
    taken = _accept_on_the_web(thief, second, THIEF_PASSWORD)
    assert taken.status_code == 422
    # Told what to do (the link is good: it needs the account's password), not that the
    # link is gone.
    assert "already has a password" in taken.text
    assert "unknown, used or expired" not in taken.text
    assert "doorstep_guest" not in thief.cookies  # not signed in
    assert [r["via"] for r in refusals(live, before.id)] == ["visitor_web"]
    assert ana(live).password_hash == before.password_hash
    assert sign_in_status(url, THIEF_PASSWORD) == 401
    assert ana_web.get("/guest").status_code == 200  # her session goes on

    again = _accept_on_the_web(stack.enter_context(httpx.Client(base_url=url)), second, PASSWORD)
    assert again.status_code == 303  # her own password: accepted, and she is signed in
    assert ana(live).password_hash == before.password_hash


def test_an_invitation_cannot_set_a_password_the_guest_chose_by_a_reset(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int]
) -> None:
    """Ana never accepted either link but chose her password with "Forgot your
    password?": the links in her mailbox are then further invitations like any other."""
    url = live.url
    first, _second = invited_twice(world, mailbox[0])
    with live.sessions() as session:
        user = session.scalar(select(User).where(User.email == EMAIL))
        assert user is not None
        passwords.set_password(session, user=user, password=PASSWORD, now=datetime.now(UTC),
                               via=signins.Via.PASSWORD_RESET, client="test")  # fmt: skip
        session.commit()

    taken = accept_by_api(url, first, THIEF_PASSWORD, name="Mallory")

    assert taken.status_code == 401
    assert taken.json()["error"]["code"] == "existing_password_required"
    assert sign_in_status(url, THIEF_PASSWORD) == 401
    assert sign_in_status(url, PASSWORD) == 200
    assert accept_by_api(url, first, PASSWORD).status_code == 200
