"""`doorstep hub` takes its claim code without showing it to every user in `ps`.

The tests run the real command (`python -m doorstep hub`); those that enroll, against a
plain HTTP server on loopback that holds the claim request open while the test reads the
hub process's command line, then refuses the claim the way the service does (401), so
the hub exits; the body it sent shows which code it redeemed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from polling import wait_until

CODE = "WXYZ-2345-ABCD"
HUB = "hub-0123456789abcdef"
ENROLLED: dict[str, Any] = {
    "hub_id": HUB,
    "home_id": "hom-0123456789abcdef",
    "broker": {"host": "127.0.0.1", "port": 0, "username": HUB, "password": "secret"},
    "issuer_keys": {},
    "access_points": ["front"],
}
REFUSED = {"error": {"code": "not_authenticated", "message": "claim code is unknown"}}


@dataclass
class ClaimServer:
    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def claims() -> Iterator[ClaimServer]:
    claim = ClaimServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            claim.bodies.append(json.loads(self.rfile.read(length)))
            claim.release.wait(timeout=30)
            payload = json.dumps(REFUSED).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    claim.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield claim
    claim.release.set()
    server.shutdown()
    server.server_close()


def _hub(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DOORSTEP_HUB_CLAIM_CODE"}
    return subprocess.Popen(
        [sys.executable, "-m", "doorstep", "hub", "--data-dir", str(tmp_path / "hub"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**environment, **(env or {})},
    )


def _stderr(hub: subprocess.Popen[str]) -> str:
    """What the ended hub printed (its standard input already closed)."""
    assert hub.stdout is not None and hub.stderr is not None
    hub.stdout.close()
    with hub.stderr:
        return hub.stderr.read()


def _redeems_unseen(hub: subprocess.Popen[str], claims: ClaimServer, stdin: str = "") -> None:
    """Lets the hub send its claim; checks its command line while the claim is open, and
    that the claim carried the code."""
    assert hub.stdin is not None
    hub.stdin.write(stdin)
    hub.stdin.close()
    wait_until(lambda: claims.bodies, timeout=30, what="the hub's claim request")
    command_line = Path(f"/proc/{hub.pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"--data-dir" in command_line  # it is the hub's
    assert CODE.encode() not in command_line
    claims.release.set()
    assert hub.wait(timeout=30) == 1
    err = _stderr(hub)
    assert "claim refused (401)" in err
    assert [body["claim_code"] for body in claims.bodies] == [CODE]


def test_a_claim_code_from_a_file_is_not_in_the_process_list(
    tmp_path: Path, claims: ClaimServer
) -> None:
    code_file = tmp_path / "claim-code"
    code_file.write_text(CODE + "\n")
    hub = _hub(tmp_path, "--service", claims.url, "--claim-code-file", str(code_file))
    _redeems_unseen(hub, claims)


def test_a_claim_code_from_standard_input_is_not_in_the_process_list(
    tmp_path: Path, claims: ClaimServer
) -> None:
    hub = _hub(tmp_path, "--service", claims.url, "--claim-code", "-")
    _redeems_unseen(hub, claims, stdin=f"  {CODE}\n")


def test_a_claim_code_from_the_environment_is_not_in_the_process_list(
    tmp_path: Path, claims: ClaimServer
) -> None:
    hub = _hub(tmp_path, "--service", claims.url, env={"DOORSTEP_HUB_CLAIM_CODE": CODE})
    _redeems_unseen(hub, claims)


def test_the_claim_code_on_the_command_line_still_works(
    tmp_path: Path, claims: ClaimServer
) -> None:
    claims.release.set()
    hub = _hub(tmp_path, "--service", claims.url, "--claim-code", CODE)
    _out, err = hub.communicate(timeout=30)
    assert hub.returncode == 1
    assert "claim refused (401)" in err
    assert [body["claim_code"] for body in claims.bodies] == [CODE]


def test_an_empty_claim_code_is_refused_before_anything_is_sent(
    tmp_path: Path, claims: ClaimServer
) -> None:
    blank = "  \n"
    code_file = tmp_path / "claim-code"
    code_file.write_text(blank)
    for args, stdin in (
        (("--claim-code-file", str(code_file)), ""),
        (("--claim-code", "-"), blank),
        (("--claim-code", "-"), ""),
    ):
        hub = _hub(tmp_path, "--service", claims.url, *args)
        _out, err = hub.communicate(stdin, timeout=30)
        assert hub.returncode == 2
        assert "the claim code is empty" in err
    assert claims.bodies == []
    assert not (tmp_path / "hub").exists()


def test_two_claim_codes_are_refused_before_anything_is_sent(
    tmp_path: Path, claims: ClaimServer
) -> None:
    code_file = tmp_path / "claim-code"
    code_file.write_text(CODE)
    for args, env in (
        (("--claim-code", CODE, "--claim-code-file", str(code_file)), None),
        (("--claim-code-file", str(code_file)), {"DOORSTEP_HUB_CLAIM_CODE": CODE}),
    ):
        hub = _hub(tmp_path, "--service", claims.url, *args, env=env)
        _out, err = hub.communicate(timeout=30)
        assert hub.returncode == 2
        assert "not both" in err
    assert claims.bodies == []


def test_an_enrolled_hub_neither_reads_nor_needs_its_spent_claim_code(tmp_path: Path) -> None:
    """A hub restarted with the options it enrolled with (a service unit's command line)
    starts, though its standard input is empty and its code file was deleted."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # no broker: the hub keeps trying to connect
    hubs = []
    for name, args in (
        ("stdin", ("--claim-code", "-")),
        ("file", ("--claim-code-file", str(tmp_path / "gone"))),
    ):
        data_dir = tmp_path / name
        (data_dir / "hub").mkdir(parents=True)
        enrolled = {**ENROLLED, "broker": {**ENROLLED["broker"], "port": port}}
        (data_dir / "hub" / "hub.json").write_text(json.dumps(enrolled))
        hubs.append((data_dir, _hub(data_dir, *args)))
    for data_dir, hub in hubs:
        assert hub.stdin is not None
        hub.stdin.close()
        control = data_dir / "hub" / "sim.sock"  # opened once the hub is built
        wait_until(
            lambda: control.exists() or hub.poll() is not None,  # noqa: B023 - awaited here
            timeout=30,
            what="the hub to start",
        )
        running = hub.poll() is None
        hub.kill()
        hub.wait(timeout=30)
        err = _stderr(hub)
        assert running, err
        assert "claim code" not in err


def test_the_help_says_how_to_keep_the_claim_code_out_of_the_process_list(
    tmp_path: Path,
) -> None:
    hub = _hub(tmp_path, "--help")
    out, _err = hub.communicate(timeout=30)
    assert hub.returncode == 0
    flat = " ".join(out.split())
    assert "--claim-code-file" in flat
    assert "DOORSTEP_HUB_CLAIM_CODE" in flat
    assert "process list" in flat
