"""A carrier's webhook endpoint cannot turn the dispatcher against the service's own
network, nor hold up everyone else's messages: the dispatcher runs on a real database
with real HTTP and SMTP servers on loopback, the rows queued as the service queues them.

Only the resolver is played (for the DNS rebinding case): no machine here runs a DNS
server that changes its answer.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine

from doorstep.clock import SystemClock
from doorstep.notify import outbox
from doorstep.notify.dispatcher import Dispatcher
from doorstep.settings import NotifySettings
from doorstep.sql import Tx, Writer
from polling import poll, wait_until

if TYPE_CHECKING:
    from conftest import Mailbox, Receiver

ALERT = "Alert: your door did not lock"


@pytest.fixture
def writer(migrated_engine: Engine) -> Iterator[Writer]:
    writer = Writer(migrated_engine)
    writer.start()
    yield writer
    writer.stop()


@contextmanager
def dispatching(writer: Writer, settings: NotifySettings) -> Iterator[None]:
    dispatcher = Dispatcher(writer=writer, clock=SystemClock(), settings=settings)
    dispatcher.start()
    try:
        yield
    finally:
        dispatcher.stop()


def queue_webhooks(writer: Writer, url: str, secret: str, count: int) -> None:
    """A carrier with its endpoint at `url`, and `count` entry events queued for it."""
    now = datetime.now(UTC) - timedelta(seconds=10)

    def job(tx: Tx) -> None:
        tx.run("INSERT INTO carriers (id, name, created_at) VALUES ('car1', 'Parcelly', ?)",
               (tx.time(now),))  # fmt: skip
        tx.run(
            "INSERT INTO webhook_endpoints (id, carrier_id, url, secret, active, created_at)"
            " VALUES ('whk1', 'car1', ?, ?, ?, ?)",
            (url, secret, True, tx.time(now)),
        )
        for number in range(count):
            at = tx.time(now + timedelta(milliseconds=number))
            tx.run(
                "INSERT INTO outbox (id, event_id, event_type, channel, target, payload,"
                " state, attempts, next_attempt_at, created_at)"
                " VALUES (?, ?, 'entry.done', 'webhook', 'whk1', ?j, 'pending', 0, ?, ?)",
                (f"msg{number}", f"ent{number}.done", tx.json({"id": f"ent{number}.done"}),
                 at, at),
            )  # fmt: skip

    writer.submit(job).result(timeout=30)


def queue_alert(writer: Writer) -> None:
    """A resident's alert email, due after the carrier's events."""
    message = {"subject": ALERT, "text": "Check the door."}
    writer.submit(
        lambda tx: outbox.queue_mail(tx, event_id="ent9.alert", event_type="entry.alert",
                                     to="resident@doorstep.test", message=message,
                                     at=datetime.now(UTC))
    ).result(timeout=30)  # fmt: skip


def rows(writer: Writer) -> dict[str, tuple[str, str | None]]:
    found = writer.submit(
        lambda tx: tx.all("SELECT id, state, last_error FROM outbox WHERE channel = 'webhook'")
    ).result(timeout=30)
    return {id_: (state, error) for id_, state, error in found}


class Silent:
    """An endpoint that takes connections and never answers, or answers one byte at a
    time (`trickle`), until told to stop."""

    def __init__(self, *, trickle: bool) -> None:
        self.accepted = 0
        self._trickle = trickle
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hooks"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _address = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            if self._trickle:
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self._stop.wait(0.1):
                if self._trickle:
                    try:
                        connection.sendall(b"a")
                    except OSError:
                        return

    def close(self) -> None:
        self._stop.set()
        self._server.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent(trickle=False)
    yield server
    server.close()


@pytest.fixture
def trickling() -> Iterator[Silent]:
    server = Silent(trickle=True)
    yield server
    server.close()


def _settings(mailbox: tuple[Mailbox, int], **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": mailbox[1],
        "allow_private_targets": True,
        "poll_seconds": 0.05,
        "webhook_timeout_seconds": 1.0,
        "retry_base_seconds": 3600,
        **overrides,
    }
    return NotifySettings(**values)


def test_an_endpoint_that_answers_a_byte_at_a_time_does_not_hold_up_residents_mail(
    writer: Writer, trickling: Silent, mailbox: tuple[Mailbox, int]
) -> None:
    queue_webhooks(writer, trickling.url, "whsec_test", count=1)
    queue_alert(writer)
    with dispatching(writer, _settings(mailbox)):
        assert ALERT in mailbox[0].wait_subjects([ALERT], timeout=15)
        state, error = poll(lambda: rows(writer)["msg0"], lambda row: row[1] is not None, 15)
    assert state == "pending" and "Timeout" in str(error)  # retried later, with backoff


def test_a_dead_endpoint_is_tried_once_a_round_not_once_per_message(
    writer: Writer, silent: Silent, mailbox: tuple[Mailbox, int]
) -> None:
    queue_webhooks(writer, silent.url, "whsec_test", count=5)
    queue_alert(writer)
    with dispatching(writer, _settings(mailbox)):
        assert ALERT in mailbox[0].wait_subjects([ALERT], timeout=15)
        found = poll(lambda: rows(writer), lambda r: all(e for _s, e in r.values()), 15)
    assert silent.accepted == 1
    assert {state for state, _error in found.values()} == {"pending"}
    assert sum("not tried" in str(error) for _state, error in found.values()) == 4


def test_a_name_that_resolves_again_to_loopback_is_not_called(
    writer: Writer,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the carrier's name answers a public address to the check, then
    this machine's loopback to the connect. Nothing may reach the loopback receiver."""
    real = socket.getaddrinfo
    answers = ["233.252.0.1"]  # public (and unroutable for TCP: nothing leaves the host)

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hooks.parcelly.test":
            return real(host, port, *args, **kwargs)
        address = answers.pop(0) if answers else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = receiver.url.split(":")[2].split("/")[0]
    receiver.secret = "whsec_test"
    queue_webhooks(writer, f"http://hooks.parcelly.test:{port}/hooks", "whsec_test", count=1)
    with dispatching(writer, _settings(mailbox, allow_private_targets=False, max_attempts=1)):
        state, error = wait_until(
            lambda: (row := rows(writer)["msg0"])[0] != "pending" and row, 15, "the attempt"
        )
    assert receiver.attempts == []
    assert state == "failed", error
