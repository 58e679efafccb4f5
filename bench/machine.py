"""Facts about the machine and the software under test, for the report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import loadgen
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
