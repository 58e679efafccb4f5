"""Carrier webhooks and resident email, through the outbox, on real HTTP and real SMTP.

The receiver is a real HTTP server on loopback that checks every signature the way a
carrier would; the mail server is aiosmtpd on loopback. A delivery runs end to end with
the in-process hub, and what reached each is asserted, including retries after failures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from doorstep.errors import InvalidRequest
from doorstep.notify import signing
from doorstep.notify.models import OutboxMessage
from doorstep.notify.router import check_target
from doorstep.settings import NotifySettings
from polling import poll

if TYPE_CHECKING:
    from conftest import Mailbox, Receiver

DELIVERY_EVENTS = [
    "entry.authorized",
    "entry.unlocked",
    "entry.opened",
    "entry.closed",
    "entry.locked",
    "entry.done",
]


@pytest.fixture
def writer_process() -> bool:
    """As `serve` runs: the hot paths through the writer process (`doorstep.hotwriter`)."""
    return True


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(
        smtp_host="127.0.0.1",
        smtp_port=mailbox[1],
        smtp_sender="Doorstep <notify@doorstep.test>",
        allow_private_targets=True,
        poll_seconds=0.1,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        max_attempts=4,
    )


def _deliver(world: demo.World) -> dict[str, Any]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    demo.wait_entry(courier, entry["id"], "opened")
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"
    return entry


def _outbox(live: Any, channel: str) -> list[OutboxMessage]:
    with live.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.channel == channel)))


def _outbox_when(
    live: Any, channel: str, done: Callable[[list[OutboxMessage]], bool], timeout: float = 30
) -> bool:
    """Poll the outbox (bounded) until `done` holds for its rows of `channel`."""
    rows = poll(lambda: _outbox(live, channel), done, timeout, every=0.1)
    return done(rows) and bool(rows)


def _set_webhook(world: demo.World, receiver: Receiver) -> dict[str, Any]:
    created: dict[str, Any] = world.carrier.call(
        "PUT", "/v1/carrier/webhook", 200, json={"url": receiver.url}
    )
    receiver.secret = created["secret"]
    return created


def test_carrier_receives_every_entry_event_signed_once_each(
    live: Any, world: demo.World, receiver: Receiver
) -> None:
    created = _set_webhook(world, receiver)
    assert created["secret"].startswith("whsec_") and created["active"] is True
    shown = world.carrier.call("GET", "/v1/carrier/webhook")
    assert "secret" not in shown  # shown once, at creation only
    entry = _deliver(world)
    types = receiver.wait_types(DELIVERY_EVENTS)
    assert sorted(types) == sorted(DELIVERY_EVENTS)
    assert receiver.bad_signatures == 0
    ids = [event_id for event_id, _kind, _body in receiver.received]
    assert len(ids) == len(set(ids))
    for event_id, kind, body in receiver.received:
        assert body["id"] == event_id and body["type"] == kind
        assert body["data"]["entry_id"] == entry["id"]
        assert body["data"]["state"] == kind.removeprefix("entry.")
    # The home's address and the resident never reach the carrier through a webhook.
    assert "home_id" not in orjson.dumps([b for _i, _k, b in receiver.received]).decode()


def test_failed_webhooks_are_retried_with_the_same_event_id(
    live: Any, world: demo.World, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    _set_webhook(world, receiver)
    _deliver(world)
    types = receiver.wait_types(DELIVERY_EVENTS, timeout=30)
    assert sorted(types) == sorted(DELIVERY_EVENTS)
    for event_id, _kind, _body in receiver.received:
        assert receiver.attempts.count(event_id) == 3  # two refused, one accepted
    # The receiver answers before the dispatcher records the outcome.
    assert _outbox_when(live, "webhook", lambda rows: {r.state for r in rows} == {"sent"})
    assert {row.attempts for row in _outbox(live, "webhook")} == {3}


def test_a_webhook_that_keeps_failing_is_given_up_and_audited(
    live: Any, world: demo.World, receiver: Receiver
) -> None:
    receiver.fail_first = 100
    _set_webhook(world, receiver)
    _deliver(world)
    assert _outbox_when(live, "webhook", lambda rows: {r.state for r in rows} == {"failed"})
    with live.sessions() as session:
        failures = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "notify:webhook_failed")
        ).all()
    assert len(failures) == len(DELIVERY_EVENTS)
    assert all(failure.data["attempts"] == 4 for failure in failures)


def test_resident_is_emailed_when_the_courier_enters_and_when_the_door_is_locked(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int]
) -> None:
    box, _port = mailbox
    _deliver(world)
    wanted = ["A courier is at your door", "Delivered, and your door is locked"]
    subjects = box.wait_subjects(wanted)
    booked = [subject for subject in subjects if subject.startswith("In-home delivery ")]
    assert len(booked) == 1  # the day's window, when the carrier booked
    assert sorted(subjects) == sorted([*wanted, *booked])
    (body,) = [
        m.get_payload(decode=True).decode() for _to, m in box.messages if m["Subject"] == booked[0]
    ]
    assert "between" in body
    for recipients, message in box.messages:
        assert recipients == ["resident1@doorstep.test"]
        assert message["From"] == "Doorstep <notify@doorstep.test>"


def test_private_webhook_targets_are_refused_unless_allowed(live: Any, world: demo.World) -> None:
    # This service allows them (tests); the check itself is exercised directly.
    for url in ("http://127.0.0.1/x", "http://10.0.0.8/x", "http://[::1]/x", "http://localhost/"):
        with pytest.raises(InvalidRequest):
            check_target(url, allow_private=False)
    check_target("https://hooks.parcelly.example/doorstep", allow_private=False)
    bad = world.carrier.http.put("/v1/carrier/webhook", json={"url": "ftp://x.example/"})
    assert bad.status_code == 422
    assert world.carrier.http.get("/v1/carrier/webhook").status_code == 404


def test_signature_verification_refuses_tampering_replay_and_wrong_secrets() -> None:
    secret, body, now = signing.new_secret(), b'{"id":"e1"}', 1_800_000_000
    header = signing.sign(secret, body, now)
    assert signing.verify(secret, header, body, now=now + 10) == now
    refusals = [
        (secret, header, b'{"id":"e2"}', now),  # body changed
        (signing.new_secret(), header, body, now),  # another secret
        (secret, header, body, now + 301),  # replayed too late
        (secret, header.replace("t=", "t=1"), body, now),  # timestamp changed
        (secret, header.split(",")[1], body, now),  # no timestamp
        (secret, f"t={now},t={now},v1=00", body, now),  # two timestamps
    ]
    for key, given, content, at in refusals:
        with pytest.raises(signing.SignatureError):
            signing.verify(key, given, content, now=at)


@pytest.mark.parametrize(
    "notify_settings", [NotifySettings(poll_seconds=0.1, allow_private_targets=True)]
)
def test_without_an_smtp_server_emails_are_set_aside_and_webhooks_still_go(
    live: Any, world: demo.World, receiver: Receiver
) -> None:
    """No `smtp_host`: every resident email of the delivery is marked `skipped` with the
    reason, none is retried or audited as failed, and the carrier's webhooks are sent."""
    _set_webhook(world, receiver)
    _deliver(world)
    assert sorted(receiver.wait_types(DELIVERY_EVENTS)) == sorted(DELIVERY_EVENTS)
    assert _outbox_when(live, "email", lambda rows: all(r.state == "skipped" for r in rows))
    emails = _outbox(live, "email")
    assert {(row.state, row.last_error) for row in emails} == {
        ("skipped", "no SMTP server is configured (notify.smtp_host)")
    }
    assert all(row.attempts == 1 for row in emails)  # claimed once, never retried
    with live.sessions() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert not [action for action in actions if action.startswith("notify:")]
