"""The simcontrol `keypad` op: a person types a code at the simulated lock."""

from __future__ import annotations

import json
from pathlib import Path

from doorstep.hub.drivers.simulated import ManualScheduler, SimulatedLock
from doorstep.hub.simcontrol import SimControl, send


def test_typing_a_code_answers_the_locks_verdict(tmp_path: Path) -> None:
    lock = SimulatedLock(scheduler=ManualScheduler())
    lock.set_user(1, name="Guest")
    lock.set_pin(1, "4711", user_index=1)
    control = SimControl(tmp_path / "sim.sock", {"front": lock})
    control.start()
    try:
        granted = send(tmp_path / "sim.sock", "keypad", "front", pin="4711")
        refused = send(tmp_path / "sim.sock", "keypad", "front", pin="0000")
    finally:
        control.stop()
        lock.close()

    assert granted["verdict"] == {
        "granted": True,
        "error": None,
        "user_index": 1,
        "lockout_engaged": False,
    }
    assert granted["status"]["lock_state"] == "unlocked"
    assert refused["verdict"]["error"] == "invalid_credential"
    assert refused["status"]["keypad_locked_out"] is False


def test_a_keypad_request_without_a_code_is_an_error(tmp_path: Path) -> None:
    lock = SimulatedLock(scheduler=ManualScheduler())
    control = SimControl(tmp_path / "sim.sock", {"front": lock})
    control.start()
    try:
        for request in ({"op": "keypad"}, {"op": "keypad", "pin": 4711}, ["keypad"]):
            answer = control.handle(json.dumps(request).encode())
            assert answer["ok"] is False
        lock.close()
        closed = control.handle(b'{"op": "keypad", "pin": "4711"}')
        assert (closed["ok"], closed["error"]) == (False, "lock driver is closed")
    finally:
        control.stop()
