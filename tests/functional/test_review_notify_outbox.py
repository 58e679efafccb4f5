"""What the outbox keeps of an email, and what a user's words can do to one, on the live
service with mail over real SMTP (aiosmtpd on loopback).

An invitation's link lets whoever holds it choose the guest's password for days; once the
mail is sent (or given up), the database (and so every backup and replica of it) no
longer holds it. A home's name goes into the invitation's subject, and cannot add a
header or a recipient to it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.broker.supervisor import free_port
from doorstep.notify.models import OutboxMessage
from doorstep.settings import NotifySettings
from polling import poll

if TYPE_CHECKING:
    from conftest import Mailbox

INVITED = "grant.invited"


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


def _invite(resident: demo.Api, home_id: str, email: str = "ana@example.org") -> None:
    body = {"access_point": "front", "label": "Ana", "kind": "always", "email": email}
    resident.call("POST", f"/v1/homes/{home_id}/grants", 201, json=body)


def _invitation(live: Any, final: bool = True) -> OutboxMessage:
    def read() -> OutboxMessage | None:
        with live.sessions() as session:
            return session.scalars(
                select(OutboxMessage).where(OutboxMessage.event_type == INVITED)
            ).one_or_none()

    row = poll(read, lambda r: r is not None and (r.state != "pending" or not final), 20)
    assert row is not None
    return row


def test_a_sent_invitation_leaves_no_usable_link_in_the_database(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int]
) -> None:
    home = world.homes[0]
    _invite(home.resident, home.id)
    subject = "You are invited to Home 1"
    assert subject in mailbox[0].wait_subjects([subject])
    (text,) = [
        m.get_payload(decode=True).decode() for _to, m in mailbox[0].messages
        if m["Subject"] == subject
    ]  # fmt: skip
    token = re.search(r"/guest/accept#([A-Za-z0-9_-]+)", text)
    assert token, text

    row = _invitation(live)
    assert row.state == "sent" and row.sent_at is not None
    # What the operator's views need is still there: type, recipient, state, times.
    assert (row.event_type, row.target, row.attempts) == (INVITED, "ana@example.org", 1)
    assert row.payload["subject"] == subject and "grant_id" in row.payload
    assert "text" not in row.payload
    assert token.group(1) not in orjson.dumps(row.payload).decode()


@pytest.mark.parametrize(
    "notify_settings",
    [NotifySettings(smtp_host="127.0.0.1", smtp_port=free_port(), poll_seconds=0.1,
                    max_attempts=1)],
)  # fmt: skip
def test_an_invitation_given_up_leaves_no_link_either(live: Any, world: demo.World) -> None:
    """No mail server answers: after its last attempt the message fails, and its text
    (with the link) goes with it."""
    home = world.homes[0]
    _invite(home.resident, home.id)
    row = _invitation(live)
    assert row.state == "failed" and row.last_error
    assert row.payload["subject"] == "You are invited to Home 1"
    assert "text" not in row.payload and "/guest/accept" not in orjson.dumps(row.payload).decode()


def test_a_home_name_cannot_add_headers_or_recipients_to_a_mail(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int]
) -> None:
    resident = world.homes[0].resident
    name = "Villa\r\nBcc: thief@example.org"
    home = resident.call(
        "POST", "/v1/homes", 201,
        json={"name": name, "address": "1 Road", "latitude": 48.0, "longitude": 2.0,
              "timezone": "Europe/Paris"},
    )  # fmt: skip
    resident.call("POST", f"/v1/homes/{home['id']}/access-points", 201,
                  json={"slug": "front", "name": "Front door"})  # fmt: skip
    _invite(resident, home["id"])
    subject = "You are invited to Villa Bcc: thief@example.org"
    assert subject in mailbox[0].wait_subjects([subject])
    ((recipients, message),) = mailbox[0].messages
    assert recipients == ["ana@example.org"]
    assert message["Bcc"] is None and message["Subject"] == subject
    assert _invitation(live).state == "sent"


@pytest.mark.parametrize("notify_settings", [NotifySettings(poll_seconds=0.1)])
def test_an_invitation_set_aside_without_a_mail_server_leaves_no_link(
    live: Any, world: demo.World
) -> None:
    """No SMTP server is configured: the mail is set aside as `skipped`, never to be sent,
    and its text (with the link) is not kept either."""
    home = world.homes[0]
    _invite(home.resident, home.id)
    row = _invitation(live)
    assert row.state == "skipped" and row.last_error
    assert row.payload["subject"] == "You are invited to Home 1" and "grant_id" in row.payload
    assert "text" not in row.payload and "/guest/accept" not in orjson.dumps(row.payload).decode()
