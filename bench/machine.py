"""Facts about the machine and the software under test, for the report."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.procstat import process_cpu_seconds
from bench.seed import hub_id

PACKAGES = (
    "uvicorn",
    "starlette",
    "fastapi",
    "pydantic",
    "sqlalchemy",
    "paho-mqtt",
    "cwt",
    "uvloop",
    "httptools",
)


def journal_fsync_ms(workdir: Path, appends: int = 50) -> float:
    """What one hub journal append costs on this disk (synchronous=FULL, WAL)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from doorstep.hub.journal import Journal
    from doorstep.protocol.messages import EventKind

    directory = workdir / "journal-probe"
    directory.mkdir(parents=True, exist_ok=True)
    journal = Journal(
        directory / "journal.db", hub_id=hub_id(0), signing_key=Ed25519PrivateKey.generate()
    )
    started = time.perf_counter()
    for _ in range(appends):
        journal.append(EventKind.LOCK_UNLOCKED, {"access_point": "front"}, time.time())
    elapsed = time.perf_counter() - started
    journal.close()
    return round(1000 * elapsed / appends, 3)


def speed_probes(round_trips: int = 4000, signatures: int = 300) -> dict[str, float]:
    """What the whole path's basic steps cost on this machine, measured in a second or
    so, so that reports from different machines can be compared by their causes.

    - `wake_round_trip_us`: one byte to another process over a socket pair and back,
      each side blocked in `recv` (what every hop between wrk, the service, its writer
      process, Mosquitto and the hub simulator pays at least once per message), and
      `wake_cpu_us`: the CPU time both processes spend on one round trip.
    - `ed25519_sign_us`, `ed25519_verify_us`: one signature and one check with the
      library the service and the hub use (a whole-path entry signs twice, the grant and
      the hub's event, and checks twice, the grant at the hub and the event at the
      service).
    - `python_loop_us`: a pure-Python loop of 1,000 additions (the interpreter's speed).
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ours, theirs = socket.socketpair()
    child = os.fork()
    if child == 0:  # echo each byte back until the parent closes its end
        ours.close()
        try:
            while theirs.recv(1):
                theirs.send(b"x")
        finally:
            os._exit(0)
    theirs.close()
    cpu_before = process_cpu_seconds(os.getpid()) + process_cpu_seconds(child)
    started = time.perf_counter()
    for _ in range(round_trips):
        ours.send(b"x")
        ours.recv(1)
    elapsed = time.perf_counter() - started
    cpu = process_cpu_seconds(os.getpid()) + process_cpu_seconds(child) - cpu_before
    ours.close()
    os.waitpid(child, 0)

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = bytes(200)
    signature = key.sign(message)
    sign_started = time.perf_counter()
    for _ in range(signatures):
        key.sign(message)
    sign = time.perf_counter() - sign_started
    verify_started = time.perf_counter()
    for _ in range(signatures):
        public.verify(signature, message)
    verify = time.perf_counter() - verify_started

    loop_started = time.perf_counter()
    for _ in range(200):
        total = 0
        for number in range(1000):
            total += number
    loop = time.perf_counter() - loop_started
    return {
        "wake_round_trip_us": round(1e6 * elapsed / round_trips, 1),
        "wake_cpu_us": round(1e6 * cpu / round_trips, 1),
        "ed25519_sign_us": round(1e6 * sign / signatures, 1),
        "ed25519_verify_us": round(1e6 * verify / signatures, 1),
        "python_loop_us": round(1e6 * loop / 200, 1),
    }


def environment() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "wrk": loadgen.wrk_version(),
        "mosquitto": _mosquitto_version(),
        "source": _source(),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "cpuidle": _cpuidle(),
        "argv": sys.argv,
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpuidle() -> str:
    """How an idle core waits (the kernel's cpuidle driver, and in a VM whether it polls
    before halting): a halted virtual core is slow to wake, which every hop between
    processes may pay."""
    parts = []
    for label, path in (
        ("driver", "/sys/devices/system/cpu/cpuidle/current_driver"),
        ("guest_halt_poll_ns", "/sys/module/haltpoll/parameters/guest_halt_poll_ns"),
    ):
        try:
            parts.append(f"{label} {Path(path).read_text().strip()}")
        except OSError:
            continue
    return ", ".join(parts) or "unknown"


def _mosquitto_version() -> str:
    from doorstep.broker.supervisor import _find_executable

    result = subprocess.run(
        [_find_executable("mosquitto"), "-h"], capture_output=True, text=True, check=False
    )
    return (result.stdout or result.stderr).splitlines()[0].strip()


def _source() -> str:
    """The commit the work tree is on, read from .git without running git."""
    git = Path(__file__).parent.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = git / ref
            commit = ref_file.read_text().strip() if ref_file.exists() else "(packed ref)"
            return f"{ref.removeprefix('refs/heads/')} @ {commit[:12]} (work tree may differ)"
        return f"{head[:12]} (work tree may differ)"
    except OSError:
        return "unknown"
