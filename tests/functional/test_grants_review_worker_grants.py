"""`GET /v1/me/grants` for a provider's worker lists an appointment only while they are
an active worker of an active provider: once let go (or once the provider is no longer
active), the answer no longer tells them the appointment's home, door, hours or the
resident's notes, as the guest web app's pages already do not (`visitor_web.passes`);
the entry engine refuses them then too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from doorstep import demo
from doorstep.grants.models import Provider
from doorstep.settings import NotifySettings

if TYPE_CHECKING:
    from conftest import Mailbox

PASSWORD = "worker-password-1"
NOTES = "Key safe code 4411, alarm off by 9"


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


def _london(delta: timedelta) -> str:
    moment = datetime.now(ZoneInfo("Europe/London")) + delta
    return moment.replace(tzinfo=None, microsecond=0).isoformat()


def assigned_worker(
    live: Any, world: demo.World, box: Mailbox, stack: ExitStack
) -> tuple[dict[str, Any], demo.Api, demo.Api, dict[str, Any], dict[str, Any]]:
    """Sparkle signs up, invites Wes, who accepts and signs in; the resident books an
    appointment with notes and Sparkle assigns Wes to it. Returns the provider, its
    admin, Wes, Wes's membership and the appointment."""
    url, home = live.url, world.homes[0]
    with demo.Api(url) as anonymous:
        provider = anonymous.call("POST", "/v1/providers", 201, json={
            "name": "Sparkle", "admin_email": "boss@sparkle.test", "admin_name": "Boss",
            "admin_password": PASSWORD})  # fmt: skip
    admin = stack.enter_context(
        demo.Api.login(url, grant_type="password", username="boss@sparkle.test", password=PASSWORD)
    )
    member = admin.call("POST", f"/v1/providers/{provider['id']}/workers", 201,
                        json={"email": "wes@sparkle.test", "name": "Wes"})  # fmt: skip
    box.wait_subjects(["Join Sparkle on Doorstep"])
    text = next(
        m.get_payload(decode=True).decode()
        for _to, m in box.messages
        if m["subject"] == "Join Sparkle on Doorstep"
    )
    token = re.search(r"#([A-Za-z0-9_-]+)", text)
    assert token is not None
    with demo.Api(url) as anonymous:
        anonymous.call("POST", "/v1/invitations/accept",
                       json={"token": token.group(1), "password": PASSWORD})  # fmt: skip
    wes = stack.enter_context(
        demo.Api.login(url, grant_type="password", username="wes@sparkle.test", password=PASSWORD)
    )
    window = {"starts_at": _london(-timedelta(hours=1)), "ends_at": _london(timedelta(hours=2))}
    booking = {"provider_id": provider["id"], "access_point": "front", "notes": NOTES, **window}
    appointment = home.resident.call("POST", f"/v1/homes/{home.id}/appointments", 201, json=booking)
    admin.call("POST", f"/v1/appointments/{appointment['id']}/assign",
               json={"worker_id": member["user_id"]})  # fmt: skip
    listed = wes.call("GET", "/v1/me/grants")
    assert [(g["id"], g["notes"]) for g in listed] == [(appointment["id"], NOTES)]
    return provider, admin, wes, member, appointment


def test_a_deactivated_worker_no_longer_sees_their_appointments(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], stack: ExitStack
) -> None:
    provider, admin, wes, member, appointment = assigned_worker(live, world, mailbox[0], stack)

    admin.call("POST", f"/v1/providers/{provider['id']}/workers/{member['user_id']}/deactivate")

    response = wes.http.get("/v1/me/grants")
    assert response.status_code == 200  # still signed in, with nothing to show
    assert response.json() == []
    assert NOTES not in response.text and appointment["id"] not in response.text


def test_the_workers_of_an_inactive_provider_no_longer_see_its_appointments(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], stack: ExitStack
) -> None:
    provider, _admin, wes, _member, appointment = assigned_worker(live, world, mailbox[0], stack)

    with live.sessions() as session:  # no route deactivates a provider yet; an operator's
        stored = session.get(Provider, provider["id"])
        assert stored is not None
        stored.active = False
        session.commit()

    response = wes.http.get("/v1/me/grants")
    assert response.status_code == 200
    assert response.json() == []
    assert NOTES not in response.text and appointment["id"] not in response.text
