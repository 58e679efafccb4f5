"""Fixtures for the hub agent tests: one agent in-process, without MQTT.

`start()` is never called, so the agent has no client and publishes nothing; everything
it would have sent is still in its journal (events, and the reply to every command),
which is what the tests read. The clock is frozen at `T`; the lock moves its bolt
instantly (`motor_seconds=0`) unless a test passes a `ManualScheduler` and a motor time.
A hub built with `camera_url` records that URL with the real recorder, started at boot
as `HubAgent.start` would start it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.db import ordered_id
from doorstep.hub.agent import HubAgent
from doorstep.hub.camera import EntryCamera, RecorderCamera
from doorstep.hub.drivers.simulated import ManualScheduler, SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.hub.lock import LockDriver
from doorstep.hub.scheduling import Scheduler
from doorstep.protocol import PROTOCOL_VERSION
from doorstep.protocol.grants import (
    GrantClaims,
    GrantSigner,
    GrantVerifier,
    audience_for,
    new_token_id,
    public_key_bytes,
)
from doorstep.protocol.messages import Command, CommandKind, Event, Reply, b64encode

T = 1_800_000_000
HUB_ID = "hub-0123456789abcdef"
DOOR = "front"
ENTRY = ordered_id("ent")  # production length: it rides in the grant


@dataclass
class Hub:
    """A hub agent with one simulated door, and the issuer that grants entries to it."""

    now: ClassVar[int] = T
    hub_id: ClassVar[str] = HUB_ID
    door: ClassVar[str] = DOOR
    entry_id: ClassVar[str] = ENTRY

    path: Path
    hub_key: Ed25519PrivateKey
    issuer_key: Ed25519PrivateKey
    journal: Journal
    lock: SimulatedLock
    agent: HubAgent
    camera_url: str | None = None
    _command_ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def signer(self) -> GrantSigner:
        return GrantSigner(self.issuer_key)

    def claims(self, **changes: Any) -> GrantClaims:
        claims = GrantClaims(
            audience=audience_for(HUB_ID, DOOR),
            not_before=T,
            expires=T + 600,
            issued_at=T,
            token_id=new_token_id(),
            scope=("unlock",),
            entry_id=ENTRY,
        )
        return replace(claims, **changes)

    def grant(self, **changes: Any) -> bytes:
        return self.signer.sign(self.claims(**changes))

    def command(self, token: bytes | None, **fields: Any) -> Command:
        """An unlock command built the way the access service builds one."""
        values: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "command_id": f"cmd-{next(self._command_ids):08d}",
            "kind": CommandKind.UNLOCK,
            "not_after": T + 30,
            "entry_id": ENTRY,
            "access_point": DOOR,
            "grant": b64encode(token) if token is not None else None,
        }
        return Command(**{**values, **fields})

    def send(self, command: Command) -> Reply | None:
        return self.agent.handle_command(command.model_dump_json().encode())

    def events(self, kind: str | None = None) -> list[Event]:
        events = self.journal.unacknowledged(limit=10_000)
        return [event for event in events if kind is None or event.kind == kind]

    def stored_reply(self, command_id: str) -> Reply | None:
        body = self.journal.command_reply(command_id)
        return Reply.model_validate_json(body) if body is not None else None

    def boot_after_crash(
        self,
        scheduler: Scheduler,
        *,
        driver: LockDriver | None = None,
        camera: EntryCamera | None = None,
        reopen_journal: bool = True,
    ) -> None:
        """The agent's process dies (nothing of it runs on, and the lock's movements go
        on: `SimulatedLock.hub_process_died`) and a new agent starts on the same journal
        file (reopened, a new boot epoch) and lock, driven through `driver` if given and
        recording through `camera`. Its `resume` is the caller's to run."""
        self.lock.hub_process_died()
        if reopen_journal:
            self.journal.close()
            self.journal = Journal(self.path, hub_id=HUB_ID, signing_key=self.hub_key)
        self.agent = HubAgent(
            hub_id=HUB_ID,
            journal=self.journal,
            locks={DOOR: driver or self.lock},
            verifier=_verifier(self.issuer_key, lambda: self.now),
            clock=lambda: self.now,
            scheduler=scheduler,
            cameras={DOOR: camera} if camera is not None else None,
        )

    def restart(self, **lock_options: Any) -> None:
        """Stop the agent (closing journal and lock) and boot a new one on the same file."""
        self.agent.stop()
        self.journal, self.lock, self.agent = _boot(
            self.path, self.hub_key, self.issuer_key, self.camera_url, **lock_options
        )


def _boot(
    path: Path,
    hub_key: Ed25519PrivateKey,
    issuer_key: Ed25519PrivateKey,
    camera_url: str | None,
    **lock_options: Any,
) -> tuple[Journal, SimulatedLock, HubAgent]:
    journal = Journal(path, hub_id=HUB_ID, signing_key=hub_key)
    options: dict[str, Any] = {"scheduler": ManualScheduler(), "motor_seconds": 0, **lock_options}
    lock = SimulatedLock(**options)
    verifier = _verifier(issuer_key, lambda: T)
    cameras: dict[str, EntryCamera] = {}
    if camera_url is not None:
        cameras[DOOR] = RecorderCamera(camera_url, path.with_suffix(".video"))
        cameras[DOOR].start()  # the agent stops it
    agent = HubAgent(
        hub_id=HUB_ID,
        journal=journal,
        locks={DOOR: lock},
        verifier=verifier,
        clock=lambda: T,
        scheduler=options["scheduler"],  # the lock's clock drives the relock watch too
        cameras=cameras,
    )
    return journal, lock, agent


def _verifier(issuer_key: Ed25519PrivateKey, clock: Callable[[], float]) -> GrantVerifier:
    return GrantVerifier(
        hub_id=HUB_ID,
        issuer_keys={GrantSigner(issuer_key).kid: public_key_bytes(issuer_key.public_key())},
        clock=clock,
    )


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Build a hub, recording `camera_url` if given; other keyword arguments go to its
    `SimulatedLock`."""
    hubs: list[Hub] = []

    def make(camera_url: str | None = None, **lock_options: Any) -> Hub:
        path = tmp_path / f"journal-{len(hubs)}.sqlite3"
        hub_key, issuer_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        journal, lock, agent = _boot(path, hub_key, issuer_key, camera_url, **lock_options)
        hubs.append(Hub(path, hub_key, issuer_key, journal, lock, agent, camera_url))
        return hubs[-1]

    yield make
    for rig in hubs:
        rig.agent.stop()


@pytest.fixture
def hub(make_hub: Callable[..., Hub]) -> Hub:
    return make_hub()
