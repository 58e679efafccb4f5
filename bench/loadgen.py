"""Drive `wrk` and read its results.

Sequential is one thread and one connection (`-t1 -c1`): each request waits for the
previous answer, so latency is the path's own. Concurrent is `-t2 -c16`: sixteen
requests in flight at all times. Both scripts in `bench/wrk/` end with a `done()` that
prints one `BENCH_RESULT {json}` line: exact counts and latency percentiles from wrk's
histogram (microseconds), rather than wrk's rounded text.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

WRK_DIR = Path(__file__).parent / "wrk"
MARKER = "BENCH_RESULT "


class LoadError(Exception):
    pass


@dataclass(frozen=True)
class Load:
    """How hard to push: wrk threads and connections."""

    name: str  # "sequential" or "concurrent"
    threads: int
    connections: int


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    latency_ms: dict[str, float]
    errors: dict[str, int]

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadError(
            "wrk is not installed: run scripts/bench (it installs it) or apt-get install wrk"
        )
    return found


def wrk_version() -> str:
    result = subprocess.run([wrk_path(), "--version"], capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).splitlines()[0].strip()


def run(
    url: str,
    *,
    script: str,
    args: list[str],
    load: Load,
    seconds: int,
    timeout_s: float = 10.0,
) -> WrkResult:
    command = [
        wrk_path(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{seconds}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(WRK_DIR / script),
        url,
        "--",
        *args,
    ]
    limit = seconds + timeout_s + 30
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"wrk did not finish within {limit:.0f}s") from exc
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            return _parse(orjson.loads(line[len(MARKER) :]))
    raise LoadError(
        f"wrk printed no result (exit {done.returncode}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )


def _parse(raw: dict[str, Any]) -> WrkResult:
    duration = raw["duration_us"] / 1e6
    latency = {key: round(value / 1000, 3) for key, value in raw["latency_us"].items()}
    return WrkResult(
        requests=raw["requests"],
        duration_s=round(duration, 3),
        rps=round(raw["requests"] / duration, 1) if duration else 0.0,
        latency_ms=latency,
        errors=dict(raw["errors"]),
    )
