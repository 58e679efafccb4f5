"""Carrier webhooks and resident email, through the outbox, on real HTTP and real SMTP.

The receiver is a real HTTP server on loopback that checks every signature the way a
carrier would; the mail server is aiosmtpd on loopback. A delivery runs end to end with
the in-process hub, and what reached each is asserted, including retries after failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from doorstep.broker.supervisor import free_port
from doorstep.errors import InvalidRequest
from doorstep.notify import signing
from doorstep.notify.models import OutboxMessage
from doorstep.notify.router import check_target
from doorstep.settings import NotifySettings

DELIVERY_EVENTS = [
    "entry.authorized",
    "entry.unlocked",
    "entry.opened",
    "entry.closed",
    "entry.locked",
    "entry.done",
]


@dataclass
class Receiver:
    """A carrier's webhook endpoint: verifies signatures, can be told to fail N times."""

    url: str = ""
    secret: str = ""
    fail_first: int = 0
    received: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def handle(self, headers: Any, body: bytes) -> int:
        event_id = headers.get(signing.EVENT_ID_HEADER, "")
        with self.changed:
            self.attempts.append(event_id)
            try:
                signing.verify(self.secret, headers.get(signing.SIGNATURE_HEADER, ""), body,
                               now=time.time())  # fmt: skip
            except signing.SignatureError:
                self.bad_signatures += 1
                return 401
            if self.attempts.count(event_id) <= self.fail_first:
                return 503
            self.received.append((event_id, headers[signing.EVENT_TYPE_HEADER], orjson.loads(body)))
            self.changed.notify_all()
            return 204

    def wait_types(self, types: list[str], timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not set(types) <= {kind for _id, kind, _body in self.received}:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(remaining)
            return [kind for _id, kind, _body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(state.handle(self.headers, body))
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/doorstep"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Mailbox:
    messages: list[Any] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        with self.changed:
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            self.changed.notify_all()
        return "250 OK"

    def wait_subjects(self, subjects: list[str], timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not set(subjects) <= set(self.subjects()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(remaining)
            return self.subjects()

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for _to, message in self.messages]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


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
    deadline = time.monotonic() + timeout
    while not done(rows := _outbox(live, channel)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return bool(rows)


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
    assert sorted(box.wait_subjects(wanted)) == sorted(wanted)
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
