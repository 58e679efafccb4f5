"""The simulated home's physical world, reachable over a Unix socket in the hub's data dir.

The demo and the tests play the courier's hands through it: open and close the door, jam
the bolt, take the lock offline, type a code at the keypad. One JSON object per line in,
one per line out:

    {"op": "open_door", "access_point": "front"}  ->  {"ok": true, "status": {...}}
    {"op": "keypad", "access_point": "front", "pin": "4711"}
        ->  {"ok": true, "verdict": {"granted": true, "error": null, "user_index": 1,
             "lockout_engaged": false}, "status": {...}}

A keypad verdict's `error` is the Matter OperationError name (`invalid_credential`,
`restricted`, `disabled_user_denied`); the code itself is never logged nor echoed.

It exists only with the simulated driver; real locks are moved by real hands.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.keypad import KeypadVerdict
from doorstep.hub.lock import LockError

OPS: dict[str, Callable[[SimulatedLock], None]] = {
    "open_door": SimulatedLock.open_door,
    "close_door": SimulatedLock.close_door,
    "jam": lambda lock: lock.inject_jam(True),
    "unjam": lambda lock: lock.inject_jam(False),
    "manual_lock": SimulatedLock.manual_lock,  # the thumb-turn inside
    "manual_unlock": SimulatedLock.manual_unlock,
    "lose_door_sensor": lambda lock: lock.lose_door_sensor(True),
    "find_door_sensor": lambda lock: lock.lose_door_sensor(False),
    "offline": lambda lock: lock.set_online(False),
    "online": lambda lock: lock.set_online(True),
    "status": lambda lock: None,
}


def status_of(lock: SimulatedLock) -> dict[str, Any]:
    status = lock.status()
    return {
        "lock_state": status.lock_state.name.lower(),
        "door_state": status.door_state.name.lower(),
        "secure": status.secure,
        "jammed": status.jammed,
        "online": status.online,
        "unlock_calls": lock.unlock_calls,
        "keypad_locked_out": lock.keypad_locked_out,
    }


def verdict_of(verdict: KeypadVerdict) -> dict[str, Any]:
    return {
        "granted": verdict.error is None,
        "error": verdict.error.name.lower() if verdict.error is not None else None,
        "user_index": verdict.user_index,
        "lockout_engaged": verdict.lockout_engaged,
    }


class SimControl:
    def __init__(self, path: Path, locks: dict[str, SimulatedLock]) -> None:
        self.path = path
        self._locks = locks
        path.unlink(missing_ok=True)
        control = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    answer = control.handle(line)
                    self.wfile.write(json.dumps(answer).encode() + b"\n")

        self._server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self._server.daemon_threads = True
        path.chmod(0o600)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            lock = self._locks[request.get("access_point") or next(iter(self._locks))]
            if request["op"] == "keypad":
                return self._keypad(lock, request["pin"])
            op = OPS[request["op"]]
        except (ValueError, KeyError, TypeError, StopIteration, AttributeError):
            return {
                "ok": False,
                "error": f"ops: {sorted([*OPS, 'keypad'])}; access points: {sorted(self._locks)}",
            }
        op(lock)
        return {"ok": True, "status": status_of(lock)}

    @staticmethod
    def _keypad(lock: SimulatedLock, pin: object) -> dict[str, Any]:
        if not isinstance(pin, str):
            return {"ok": False, "error": "keypad needs a pin (a string of digits)"}
        try:
            verdict = lock.keypad_entry(pin)
        except LockError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "verdict": verdict_of(verdict), "status": status_of(lock)}


def send(
    path: Path,
    op: str,
    access_point: str | None = None,
    timeout: float = 5.0,
    *,
    pin: str | None = None,
) -> dict[str, Any]:
    """Client side: one request, one answer (`pin` for the `keypad` op)."""
    request: dict[str, Any] = {"op": op, "access_point": access_point}
    if pin is not None:
        request["pin"] = pin
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        buffer = b""
        while not buffer.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            buffer += chunk
    answer: dict[str, Any] = json.loads(buffer)
    return answer
