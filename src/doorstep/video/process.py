"""ffmpeg children: started bound to our lifetime, stopped by pid, and ffprobe.

Every ffmpeg the video package runs goes through `spawn`, which in the child (between
fork and exec) sets a 077 umask, so spool files and clips are private to our user, and
PR_SET_PDEATHSIG(SIGKILL), so the child dies with us, even if we are killed with SIGKILL.
Linux ties the death signal to the *thread* that forked, not the process: a child
started from a short-lived thread would be killed when that thread exits. So every child
is forked by one long-lived thread of this module (`video-spawn`), whatever thread asks;
that thread ends only when the interpreter does.

`stop` ends one child by its pid: SIGTERM (ffmpeg then closes its outputs cleanly), then
SIGKILL after a timeout. Nothing here looks processes up by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from doorstep.video.errors import VideoError

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PROBE_TIMEOUT = 10.0  # seconds

# Bound once in the parent: the child must not load libraries or take Python locks
# between fork and exec.
_prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-spawn")


def _child_setup() -> None:
    os.umask(0o077)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = subprocess.DEVNULL,
    stderr: int | IO[bytes] | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start `argv` as a private child (umask 077) that dies with this process."""
    popen = _spawner.submit(
        subprocess.Popen,
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=_child_setup,  # a syscall and a prebound C call: fork-safe
    )
    try:
        return popen.result()
    except OSError as exc:
        raise VideoError(f"cannot start {argv[0]}: {exc}") from exc


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 3.0) -> None:
    """SIGTERM the child, again after half of `timeout`, SIGKILL it after `timeout`, and
    reap it; safe to call twice.

    ffmpeg, once running, only notes a first SIGTERM and finishes after its next packet;
    a second one also interrupts a read that waits for input (a camera gone silent), so
    it still closes its outputs (and lists its last segment) before exiting."""
    if process is None:
        return
    for _ in range(2):
        if process.poll() is not None:
            break
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout / 2)
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def free_udp_port() -> int:
    """A UDP port on the loopback address that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def probe(path: Path, *, ffprobe: str = "ffprobe") -> dict[str, Any]:
    """ffprobe's JSON (format and streams) for one media file."""
    argv = [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)]
    result: dict[str, Any] = json.loads(run(argv, timeout=PROBE_TIMEOUT))
    return result


def probe_duration(path: Path, *, ffprobe: str = "ffprobe") -> float:
    """The container's duration in seconds, as ffprobe reports it."""
    try:
        return float(probe(path, ffprobe=ffprobe)["format"]["duration"])
    except (KeyError, ValueError) as exc:
        raise VideoError(f"{path.name} has no duration") from exc


def run(argv: Sequence[str], *, timeout: float) -> bytes:
    """Run one short ffmpeg/ffprobe job to completion and return its stdout; raise
    VideoError with the end of its stderr when it fails or overruns `timeout`."""
    process = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stop(process, timeout=0)
        raise VideoError(f"{argv[0]} did not finish in {timeout:g} s") from exc
    finally:
        stop(process, timeout=0)
    if process.returncode != 0:
        raise VideoError(f"{argv[0]} failed: {_tail(err)}")
    return out


def _tail(stderr: bytes, limit: int = 400) -> str:
    return stderr.decode("utf-8", "replace").strip()[-limit:]
