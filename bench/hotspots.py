"""Where the service spends its time under load: py-spy samples the running `serve`
process and its writer process (`doorstep.hotwriter`; every thread, on-CPU only) while
wrk drives one scenario.

py-spy is optional and not part of the project's lock: `.venv/bin/pip install py-spy`.
The profiled run is separate from the measured ones (sampling slows the service a little).
Samples are aggregated by function: "inclusive" is the share of samples with the function
anywhere on the stack, "self" the share with it on top. Thread names tell the event loop
(MainThread), the route handlers (AnyIO worker thread), the hub link's ingest
(hub-ingest) and paho's network thread apart.

py-spy counts a thread blocked in a Python-level wait (an idle thread-pool worker in
`Queue.get`, paho's `select`) as active, so stacks ending in one of `IDLE_LEAVES` are
dropped before the shares are computed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

TOP = 20
IDLE_LEAVES = ("Condition.wait ", "Event.wait ", "Thread.join ", "Client._loop ")
LIBRARY_FRAMES = (
    "Session.commit ",
    "Session.flush ",
    "Session.get ",
    "Session.execute ",
    "GrantSigner.sign ",
    "Client.publish ",
)


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, output: Path, *, rate: int = 200) -> subprocess.Popen[bytes]:
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed")
    return subprocess.Popen(
        [
            executable,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--function",
            "--threads",
            "--subprocesses",  # the writer process (`doorstep.hotwriter`) too
            "--nonblocking",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def summarize(raw: Path, *, top: int = TOP) -> dict[str, Any]:
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, _, rest = stack.partition(";")
        frames = [_short(frame) for frame in rest.split(";") if frame]
        if frames and frames[-1].startswith(IDLE_LEAVES):
            continue
        total += count
        threads[_thread_name(head)] += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    return {
        "samples": total,
        "threads": _shares(threads, total, top),
        "inclusive": _shares(
            Counter({f: c for f, c in inclusive.items() if _interesting(f)}), total, top * 2
        ),
        "self": _shares(own, total, top),
    }


def _interesting(frame: str) -> bool:
    # The process's entry point (cli, server) only mirrors the MainThread share.
    if "doorstep/cli/" in frame or "doorstep/server.py" in frame or "__main__" in frame:
        return False
    return "doorstep/" in frame or frame.startswith(LIBRARY_FRAMES)


def _thread_name(head: str) -> str:
    # "thread (1234): AnyIO worker thread" -> "AnyIO worker thread"
    name = head.partition(": ")[2] or head
    return name.rstrip("0123456789-_ ") or name


def _short(frame: str) -> str:
    # "request_entry (/…/site-packages/doorstep/access/service.py:73)"
    # -> "request_entry (doorstep/access/service.py:73)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")")
    for marker in ("site-packages/", "lib/python3.11/", "/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def _shares(counter: Counter[str], total: int, top: int) -> list[dict[str, Any]]:
    return (
        [
            {"frame": frame, "samples": count, "pct": round(100 * count / total, 1)}
            for frame, count in counter.most_common(top)
        ]
        if total
        else []
    )
