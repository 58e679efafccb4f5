"""Shared pieces of the functional tests: a carrier's webhook receiver and a mail server
(`smtp_mailbox`, which the web tests use too).

A test module that wants them points the service at them by overriding the
`notify_settings` fixture (see test_notify.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest

from doorstep.notify import signing
from smtp_mailbox import Mailbox, serving


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


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    with serving() as served:
        yield served


AuditWait = Callable[..., dict[str, Any]]


@pytest.fixture
def wait_audit(live: Any) -> AuditWait:
    """Wait on the home's live event stream (replayed from the start, so nothing already
    recorded is missed) for the first audit record with this action and subject, whose
    data holds `data`; fails when the stream stays silent past the timeout."""

    def wait(
        api: Any, home_id: str, action: str, subject: str, timeout: float = 15, **data: Any
    ) -> dict[str, Any]:
        headers = {**api.http.headers, "last-event-id": "0"}
        url = f"{live.url}/v1/homes/{home_id}/events"
        deadline = time.monotonic() + timeout
        with (
            httpx.Client(timeout=httpx.Timeout(timeout)) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            assert response.status_code == 200, response.status_code
            for line in response.iter_lines():
                assert time.monotonic() < deadline, f"no {action} on {subject} in {timeout} s"
                if not line.startswith("data: "):
                    continue
                record: dict[str, Any] = orjson.loads(line.removeprefix("data: "))
                matches = all(record["data"].get(key) == value for key, value in data.items())
                if record["action"] == action and record["subject"] == subject and matches:
                    return record
        raise AssertionError(f"the stream ended before {action} on {subject}")

    return wait
