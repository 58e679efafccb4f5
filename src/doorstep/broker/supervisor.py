"""Run and supervise one local Mosquitto for `doorstep serve`.

`Mosquitto` owns a directory holding the broker's configuration, password file, ACL
(all 0600), log and persistence data, and one child process. `start` writes the files
and waits until the broker is listening; `update_hubs` rewrites the password file and
ACL and makes the broker reload them; `stop` ends the process. Hub passwords arrive as
`$7$` hashes only: the plaintext stays with whoever provisions the hub.

A `serve` that dies without `stop` leaves its broker running, still autosaving into the
same persistence file; the pid we record lets the next `start` end that stale broker
first (only if /proc shows it is Mosquitto running this directory's configuration).

Readiness and reloads are read from the broker's own log (it writes to stderr, which we
send to `mosquitto.log`): "mosquitto version ... running" comes after the listener is
open, and "Reloading config." at the start of a reload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from doorstep.broker.config import (
    MAX_PAYLOAD_BYTES,
    BrokerUser,
    TlsListener,
    render_acl,
    render_mosquitto_conf,
    render_passwords,
)
from doorstep.broker.passwords import hash_password, new_password

HOST = "127.0.0.1"
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
RUNNING_LINE = re.compile(rb"mosquitto version \S+ running")
RELOAD_LINE = re.compile(rb"Reloading config\.")
POLL_SECONDS = 0.02
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STALE_EXIT_SECONDS = 5.0


class BrokerError(Exception):
    """The local broker could not be found, started, reloaded or stopped."""


class Mosquitto:
    """One supervised Mosquitto process listening on a loopback port."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        service_user: str = "doorstep-service",
        service_password: str | None = None,
        executable: str = "mosquitto",
        max_payload_bytes: int | None = MAX_PAYLOAD_BYTES,
        tls: TlsListener | None = None,
    ) -> None:
        """`max_payload_bytes`: the largest message the broker takes (None: no limit of
        ours, for a test broker standing in for someone else's). `tls`: a second
        listener, for hubs, that speaks TLS only."""
        self._directory = Path(directory)
        self._port = port if port is not None else free_port()
        self._service_password = service_password or new_password()
        # Validates the name now rather than at start.
        self._service = BrokerUser(service_user, hash_password(self._service_password))
        self._peers: list[BrokerUser] = []
        self._executable = executable
        self._max_payload_bytes = max_payload_bytes
        self._tls = tls
        self._process: subprocess.Popen[bytes] | None = None
        # One reload at a time: each waits for its own "Reloading config." line.
        self._reload_lock = threading.Lock()

    def add_service_user(self, username: str) -> str:
        """Another user with the service's reach (all hub topics), e.g. a second `serve`
        process or a test peer: the broker ties each client id to one user name, so each
        process needs a user of its own. Call before `start`; returns its password."""
        if self.running:
            raise BrokerError("add service users before starting the broker")
        password = new_password()
        self._peers.append(BrokerUser(username, hash_password(password)))
        return password

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self._port}"

    @property
    def tls(self) -> TlsListener | None:
        return self._tls

    @property
    def service_user(self) -> str:
        return self._service.username

    @property
    def service_password(self) -> str:
        return self._service_password

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def data_dir(self) -> Path:
        return self._directory / "data"

    @property
    def log_file(self) -> Path:
        return self._directory / "mosquitto.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, hubs: Mapping[str, str] | None = None, *, timeout: float = 10) -> None:
        """Write the files for `hubs` (hub id -> `$7$` hash) and start the broker.

        Returns once it accepts TCP connections on `port` (the TLS listener, if any, is
        open by then: the broker opens every listener before it logs that it runs).
        """
        if self.running:
            raise BrokerError("mosquitto is already running")
        executable = _find_executable(self._executable)
        self._end_stale_broker()
        self._write_files(hubs or {}, conf=True)
        log_offset = _size(self.log_file)
        self._process = self._spawn(executable)
        _write_private(self._pid_file, f"{self._process.pid}\n")
        deadline = time.monotonic() + timeout
        try:
            self._wait_for_log(RUNNING_LINE, log_offset, deadline)
            self._wait_for_port(deadline)
        except BrokerError:
            self.stop()
            raise

    def update_hubs(
        self, hubs: Mapping[str, str] | Callable[[], Mapping[str, str]], *, timeout: float = 5
    ) -> None:
        """Replace the hubs the broker accepts, and wait until it has begun reloading.
        Given as a callable, the hubs are read under the reload lock: of two updates at
        once (two hubs enrolled together), the one written last is never the older list.

        The broker handles one event at a time, so a connection made after this returns
        is checked against the new files. Mosquitto 2.0 also re-checks open connections
        on reload and drops those of hubs no longer listed. Blocks for about 0.1 s: call
        it off the event loop.
        """
        with self._reload_lock:
            if not self.running or self._process is None:
                raise BrokerError("mosquitto is not running")
            self._write_files(hubs() if callable(hubs) else hubs, conf=False)
            log_offset = _size(self.log_file)
            self._process.send_signal(signal.SIGHUP)
            self._wait_for_log(RELOAD_LINE, log_offset, time.monotonic() + timeout)

    def revive(self, hubs: Callable[[], Mapping[str, str]]) -> int | None:
        """If the broker has died, start it again (same port, same persistence) with the
        hubs `hubs()` gives now, and return the exit status it died with; None if it is
        running, or was stopped on purpose. Holds the reload lock, so an `update_hubs`
        that comes meanwhile waits and then applies to the new process."""
        with self._reload_lock:
            process = self._process
            if process is None or process.poll() is None:
                return None
            self._process = None
            try:
                self.start(hubs())
            except BaseException:
                self._process = process  # still dead: the next call tries again
                raise
            return process.returncode

    def stop(self, timeout: float = 5) -> None:
        """End the broker (SIGTERM, then SIGKILL after `timeout`); safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._pid_file.unlink(missing_ok=True)

    def __enter__(self) -> Mosquitto:
        """Start the broker with no hubs, unless it is already running."""
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the broker's log, for error messages."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(max(0, _size(self.log_file) - 8192))
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def _pid_file(self) -> Path:
        return self._directory / "mosquitto.pid"

    @property
    def _conf_file(self) -> Path:
        return self._directory / "mosquitto.conf"

    def _end_stale_broker(self) -> None:
        pid = _read_pid(self._pid_file)
        if pid is None or not self._is_our_broker(pid):
            return
        os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, time.monotonic() + STALE_EXIT_SECONDS):
            os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(pid, time.monotonic() + STALE_EXIT_SECONDS):
                raise BrokerError(f"a stale mosquitto (pid {pid}) would not exit")
        self._pid_file.unlink(missing_ok=True)

    def _is_our_broker(self, pid: int) -> bool:
        # A recycled pid, or a zombie (empty cmdline), does not match.
        argv = _cmdline(pid)
        expected = ["-c", str(self._conf_file)]
        return len(argv) == 3 and "mosquitto" in Path(argv[0]).name and argv[1:] == expected

    def _wait_gone(self, pid: int, deadline: float) -> bool:
        while self._is_our_broker(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def _write_files(self, hubs: Mapping[str, str], *, conf: bool) -> None:
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        services = [self._service, *self._peers]
        acl = render_acl([user.username for user in services], hubs)
        users = [*services, *(BrokerUser(hub, hashed) for hub, hashed in hubs.items())]
        _write_private(self._directory / "passwords", render_passwords(users))
        _write_private(self._directory / "acl", acl)
        if conf:
            _write_private(self._conf_file, self._render_conf())

    def _render_conf(self) -> str:
        return render_mosquitto_conf(
            port=self._port,
            data_dir=self.data_dir,
            password_file=self._directory / "passwords",
            acl_file=self._directory / "acl",
            log_file=None,
            # Started as root, Mosquitto would switch to user `mosquitto`, which cannot
            # read our 0600 files; "root" tells it to stay. Other users are never switched.
            user="root" if os.geteuid() == 0 else None,
            max_payload_bytes=self._max_payload_bytes,
            tls=self._tls,
        )

    def _spawn(self, executable: str) -> subprocess.Popen[bytes]:
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            return subprocess.Popen(
                [executable, "-c", str(self._conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            os.close(log_fd)

    def _wait_for_log(self, line: re.Pattern[bytes], offset: int, deadline: float) -> None:
        while not line.search(_read_from(self.log_file, offset)):
            self._check_alive()
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not log {line.pattern!r}:\n{self.log_tail()}")
            time.sleep(POLL_SECONDS)

    def _wait_for_port(self, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                socket.create_connection((HOST, self._port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError(f"mosquitto is not listening on {self._port}") from None
            time.sleep(POLL_SECONDS)

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            raise BrokerError(f"mosquitto exited with status {code}:\n{self.log_tail()}")


def _find_executable(executable: str) -> str:
    # Debian installs mosquitto in /usr/sbin, often not on a non-root user's PATH.
    found = shutil.which(executable) or shutil.which(executable, path=SBIN_PATH)
    if found is None:
        raise BrokerError(f"{executable} not found; run scripts/setup")
    return found


def _die_with_parent() -> None:
    # Linux: the broker gets SIGTERM when the process that started it dies, even by
    # SIGKILL, so a crashed `serve` never leaves an orphan holding the port and database.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file, so the broker never reads half a file."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)
        file.write(text)
    os.replace(temporary, path)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read()
    except FileNotFoundError:
        return b""
