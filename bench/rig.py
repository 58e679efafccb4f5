"""The system under test, as real processes on loopback: a Mosquitto started with the
project's supervisor, `doorstep serve` started the way the demo starts it (default
settings, `DOORSTEP_BROKER_URL` pointing at that broker), and the hub simulator.

The rig also owns the bench's view of the database (to seed blocks of homes and count
entries by state) and hands out request numbers, so no two runs share a delivery.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote

import httpx

from bench.seed import (
    COURIER_EMAIL,
    PASSWORD,
    Accounts,
    Block,
    Seeder,
    create_accounts,
    entry_states,
)
from doorstep import db
from doorstep.access import keys as issuer_keys
from doorstep.broker import Mosquitto
from doorstep.demo import Service, start_service
from doorstep.settings import Settings


class RigError(Exception):
    pass


class HubSim:
    """The `bench.hubsim` child process and its line protocol."""

    def __init__(self, data_dir: Path, broker_url: str, hub_secret: bytes, log: Path) -> None:
        self._log = log
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.hubsim",
                    "--data-dir",
                    str(data_dir),
                    "--broker-url",
                    broker_url,
                    "--hub-secret",
                    hub_secret.hex(),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                bufsize=1,
            )
        self._expect("connected")

    def prepare(self, block: Block) -> float:
        """Build the agents of `block`'s hubs; returns the seconds it took."""
        words = self._ask(f"prepare {block.start} {block.count}").split()
        if words[:1] != ["ready"]:
            raise RigError(f"hub simulator answered {' '.join(words)!r}")
        return float(words[2])

    def stats(self) -> str:
        return self._ask("stats")

    def stop(self) -> str:
        try:
            final = self._ask("quit")
        except RigError:
            final = "{}"
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return final

    def _ask(self, line: str) -> str:
        stdin, stdout = self._pipes()
        stdin.write(line + "\n")
        stdin.flush()
        answer = stdout.readline()
        if not answer:
            raise RigError(f"hub simulator exited; see {self._log}")
        return answer.strip()

    def _expect(self, word: str) -> None:
        _, stdout = self._pipes()
        answer = stdout.readline().strip()
        if answer != word:
            raise RigError(f"hub simulator did not start ({answer!r}); see {self._log}")

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout


HUBSIM_USER = "bench-hubsim"


class Rig:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.logs = self.data_dir / "logs"
        self.hub_secret = secrets.token_bytes(16)
        self.broker = Mosquitto(workdir / "broker")
        # The broker ties client ids to user names, so the hub simulator needs its own
        # user with the service's reach (all hub topics).
        self.hubsim_password = self.broker.add_service_user(HUBSIM_USER)
        self.service: Service | None = None
        self.sim: HubSim | None = None
        self.accounts: Accounts | None = None
        self._next = 1
        settings = Settings(data_dir=self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = db.make_engine(
            settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        self.sessions = db.make_session_factory(self.engine)
        self._seeder: Seeder | None = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self.broker.start({})
        db.upgrade(self.engine)
        # Created here, read by the service at start and by the hub simulator.
        issuer_keys.load_or_create(self.data_dir / "keys")
        accounts = create_accounts(self.engine, self.sessions, now=datetime.now(UTC))
        self.accounts = accounts
        self.tokens_file.write_text("\n".join(accounts.tokens) + "\n")
        self.tokens_file.chmod(0o600)
        self._seeder = Seeder(self.engine, accounts, hub_secret=self.hub_secret)
        # The load generator (wrk) sends one request per entry and holds no phone key, so
        # proof of possession is off here: the measured path is request -> grant -> unlock,
        # without the challenge round trip a phone adds (see bench/README.md).
        self.service = start_service(
            self.data_dir,
            env={
                "DOORSTEP_BROKER_URL": self.broker_url,
                "DOORSTEP_ENTRY__REQUIRE_PROOF_OF_POSSESSION": "false",
                # The attempt limits are the defaults: the fleet is large enough that no
                # courier meets them (bench/seed.py).
            },
        )
        self._check_sign_in()

    def start_hubs(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        hubsim_url = self._url(HUBSIM_USER, self.hubsim_password)
        self.sim = HubSim(self.data_dir, hubsim_url, self.hub_secret, self.logs / "hubsim.log")

    def stop(self) -> str:
        final = self.sim.stop() if self.sim else "{}"
        self.sim = None
        if self.service is not None:
            self.service.process.stop()
        self.broker.stop()
        self.engine.dispose()
        return final

    @property
    def broker_url(self) -> str:
        return self._url(self.broker.service_user, self.broker.service_password)

    def _url(self, user: str, password: str) -> str:
        return f"mqtt://{quote(user)}:{quote(password)}@{self.broker.host}:{self.broker.port}"

    @property
    def url(self) -> str:
        if self.service is None:
            raise RigError("the service is not running")
        return self.service.url

    def pids(self) -> dict[str, int | None]:
        return {
            "service": self.service.process.popen.pid if self.service else None,
            "broker": self.broker.pid,
            "hubsim": self.sim.process.pid if self.sim else None,
        }

    @property
    def tokens_file(self) -> Path:
        """The couriers' bearer tokens, one a line, for the wrk script."""
        return self.workdir / "courier-tokens.txt"

    def token_of(self, n: int) -> str:
        """The bearer token of the courier who makes request `n`."""
        if self.accounts is None:
            raise RigError("the rig is not started")
        return self.accounts.token_of(n)

    def _check_sign_in(self) -> None:
        """The first courier signs in through the API, so a broken service fails here
        with a clear message rather than as a run of 401s."""
        response = httpx.post(
            f"{self.url}/v1/auth/token",
            timeout=30,
            data={"grant_type": "password", "username": COURIER_EMAIL, "password": PASSWORD},
        )
        if response.status_code != 200:
            raise RigError(f"courier sign-in failed: {response.status_code} {response.text}")

    # --- data ------------------------------------------------------------------------

    def allocate(self, count: int, *, hubs: bool) -> Block:
        """Seed `count` fresh homes; with `hubs`, have the simulator ready to answer."""
        assert self._seeder is not None
        block = Block(self._next, count)
        self._next = block.stop
        self._seeder.seed(block, now=datetime.now(UTC))
        if hubs:
            if self.sim is None:
                raise RigError("the hub simulator is not running")
            self.sim.prepare(block)
        return block

    def entry_states(self) -> dict[str, int]:
        return entry_states(self.sessions)

    def settle(self, *, timeout: float = 10.0) -> dict[str, int]:
        """Wait until no entry is still changing state; returns the counts."""
        deadline = time.monotonic() + timeout
        states = self.entry_states()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            again = self.entry_states()
            if again == states:
                return again
            states = again
        return states

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / name
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
