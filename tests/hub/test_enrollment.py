"""Enrollment keeps the hub's keys and sends their public halves with the claim code.

The service side is a plain HTTP server on loopback that answers the claim route the way
the service does and keeps the body it got, so the test reads what the hub really sent.
"""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from doorstep.hub import config as hub_config
from doorstep.protocol import seal
from doorstep.protocol.messages import b64decode

HUB = "hub-0123456789abcdef"
ANSWER = {
    "hub_id": HUB,
    "home_id": "hom-0123456789abcdef",
    "broker": {"host": "127.0.0.1", "port": 1883, "username": HUB, "password": "secret"},
    "issuer_keys": {},
    "access_points": ["front"],
}


@pytest.fixture
def claims() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            bodies.append(json.loads(self.rfile.read(length)))
            payload = json.dumps(ANSWER).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


def test_enrollment_creates_the_seal_key_and_sends_its_public_half(tmp_path: Path, claims) -> None:
    url, bodies = claims
    data_dir = tmp_path / "hub"

    config = hub_config.enroll(data_dir, service_url=url, claim_code="ABCD-EFGH-JKLM")

    assert config.hub_id == HUB
    path = data_dir / "seal.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    [body] = bodies
    assert set(body) == {"claim_code", "public_key", "seal_key"}
    sent = b64decode(body["seal_key"])
    key = hub_config.seal_key(data_dir)  # what the runner loads later: the same key
    assert sent == seal.public_key_bytes(key)
    sealed = seal.seal(sent, b"4711", hub_id=HUB, context="grt-1")
    assert seal.open_sealed(key, sealed, hub_id=HUB, context="grt-1") == b"4711"


def test_a_corrupt_seal_key_is_an_enrollment_error(tmp_path: Path) -> None:
    (tmp_path / "seal.key").write_bytes(b"short")

    with pytest.raises(hub_config.EnrollmentError, match="X25519"):
        hub_config.seal_key(tmp_path)
