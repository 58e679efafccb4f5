"""Shared pieces of the guest and provider app's tests: the service's mail going to a
real SMTP server (`functional/conftest.py`'s mailbox), invitations as residents and
providers make them through the API, and the links they mail."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller

from doorstep import demo
from doorstep.broker.supervisor import free_port
from functional.conftest import Mailbox

PASSWORD = "visitor-password-1"
_LINK = re.compile(r"(https?://\S+/guest/accept#[A-Za-z0-9_-]+)")


def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on a loopback port collecting mail in `functional`'s Mailbox
    (a module's `mailbox` fixture yields from it)."""
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def mailed_link(box: Mailbox, subject: str, to: str, timeout: float = 20) -> str:
    """The invitation link in the newest mail with `subject` to `to` (waits for it)."""
    deadline = time.monotonic() + timeout
    with box.changed:
        while (
            not (found := [m for rcpt, m in box.messages if m["subject"] == subject and to in rcpt])
            and (remaining := deadline - time.monotonic()) > 0
        ):
            box.changed.wait(remaining)
    assert found, (subject, to, box.subjects())
    match = _LINK.search(str(found[-1].get_payload(decode=True).decode()))
    assert match, found[-1]
    return match.group(1)


def london(delta: timedelta) -> str:
    """A wall-clock time in the demo homes' zone, as the resident enters it."""
    moment = datetime.now(ZoneInfo("Europe/London")) + delta
    return moment.replace(tzinfo=None, second=0, microsecond=0).isoformat()


def invite_guest(home: demo.Home, email: str, label: str, **fields: Any) -> dict[str, Any]:
    """The resident grants `email` access to the front door by the app (mailed)."""
    body = {"access_point": "front", "label": label, "kind": "always", "email": email, **fields}
    created: dict[str, Any] = home.resident.call(
        "POST", f"/v1/homes/{home.id}/grants", 201, json=body
    )
    grant: dict[str, Any] = created["grant"]
    return grant


def sign_up_provider(url: str, name: str, admin_email: str) -> tuple[dict[str, Any], demo.Api]:
    """A provider and its first admin (signed in to the API)."""
    with demo.Api(url) as anonymous:
        provider: dict[str, Any] = anonymous.call("POST", "/v1/providers", 201, json={
            "name": name, "admin_email": admin_email, "admin_name": f"{name} Boss",
            "admin_password": PASSWORD})  # fmt: skip
    admin = demo.Api.login(url, grant_type="password", username=admin_email, password=PASSWORD)
    return provider, admin


def book(home: demo.Home, provider_id: str, notes: str = "") -> dict[str, Any]:
    """An appointment now (from an hour ago to two hours from now) at the front door."""
    appointment: dict[str, Any] = home.resident.call(
        "POST", f"/v1/homes/{home.id}/appointments", 201, json={
            "provider_id": provider_id, "access_point": "front", "notes": notes,
            "starts_at": london(-timedelta(hours=1)), "ends_at": london(timedelta(hours=2))},
    )  # fmt: skip
    return appointment


def accept(url: str, link: str, email: str) -> demo.Api:
    """Accept an invitation through the API, sign in, and register a phone key."""
    token = link.split("#", 1)[1]
    with demo.Api(url) as anonymous:
        anonymous.call(
            "POST", "/v1/invitations/accept", json={"token": token, "password": PASSWORD}
        )
    api = demo.Api.login(url, grant_type="password", username=email, password=PASSWORD)
    api.phone = demo.Phone()
    api.phone.register(api)
    return api
