"""A real SMTP server (aiosmtpd) on a loopback port that keeps the mail it receives, so a
test reads the service's mail as its recipient gets it: once an email is sent or set
aside, its outbox row keeps no text. `serving()` starts one; a `Mailbox` waits, on a
condition, for mail by subject or for the mail sent for an outbox event.

`tests/` is on pytest's `pythonpath`, so any test imports this as `smtp_mailbox` (not
`mailbox`, which would hide the standard library's module of that name).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

from doorstep.broker.supervisor import free_port

T = TypeVar("T")


@dataclass(frozen=True)
class Mail:
    """One received mail as its reader sees it."""

    to: list[str]
    subject: str
    text: str


@dataclass
class Mailbox:
    """What the server received, as (recipients, message), in order of arrival."""

    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        with self.changed:
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            self.changed.notify_all()
        return "250 OK"

    def wait_subjects(self, subjects: list[str], timeout: float = 20) -> list[str]:
        """Wait until mail with each of `subjects` has come or `timeout` s have passed;
        returns the subjects received, for the caller to assert on."""
        self._wait(lambda: set(subjects) <= set(self.subjects()), timeout)
        return self.subjects()

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for _to, message in self.messages]

    def sent_for(self, event_id: str, timeout: float = 20) -> Mail:
        """The mail the service sent for the outbox event `event_id` (the dispatcher makes
        its Message-ID `<event id@doorstep>`); waits for it, and fails naming what came."""
        message_id = f"<{event_id}@doorstep>"
        found = self._wait(
            lambda: [(to, m) for to, m in self.messages if m["Message-ID"] == message_id],
            timeout,
        )
        assert len(found) == 1, f"{len(found)} mails {message_id}; received {self.subjects()}"
        ((to, message),) = found
        return Mail(to, str(message["Subject"]), _text(message))

    def _wait(self, found: Callable[[], T], timeout: float) -> T:
        """`found()` once it is truthy, or as it is when `timeout` s have passed."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (value := found()) and (remaining := deadline - time.monotonic()) > 0:
                self.changed.wait(remaining)
            return value


def _text(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes), message
    return body.decode(message.get_content_charset() or "ascii")


@contextmanager
def serving() -> Iterator[tuple[Mailbox, int]]:
    """A Mailbox behind a real SMTP server on a free loopback port, and the port. Plain
    SMTP: the service asks a loopback server for no STARTTLS unless told to."""
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
