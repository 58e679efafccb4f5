"""A lock user slot freed by a revoked code is not handed to the next code at once.

Keypad lock events name the lock user (`user_index`), nothing else, and the hub credits
them to whichever credential holds that slot when the event arrives. A late event for a
revoked code (the lock reports the unlock after the hub has reprogrammed its slot) must
not be credited to the code that took the slot over: its audit and its use count. So the
hub reuses the least recently freed slot, and remembers that order across a restart.

The agent runs in-process (no MQTT) with the real `CredentialManager` and a simulated
lock whose motor takes a second, which is what makes the unlock's report late.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub.agent import HubAgent
from doorstep.hub.credential_store import CredentialStore
from doorstep.hub.credentials import CredentialManager
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.hub.keypad import KeypadLimits
from doorstep.hub.scheduling import ManualScheduler
from doorstep.protocol import seal
from doorstep.protocol.grants import GrantVerifier, public_key_bytes
from doorstep.protocol.messages import Event, EventKind, b64encode
from doorstep.protocol.shadow import sign_shadow

T = 1_800_000_000
HUB_ID = "hub-0123456789abcdef"
DOOR = "front"
MOTOR_SECONDS = 1.0
OLD, NEW = "grt-revoked", "grt-replacement"
OLD_PIN, NEW_PIN = "47106283", "58203164"


class Hub:
    """One hub agent with keypad credentials on one simulated lock; restartable on the
    same files and the same lock (which keeps its codes, as a real one does)."""

    def __init__(self, path: Path, limits: KeypadLimits | None = None) -> None:
        self.path = path
        self.issuer = Ed25519PrivateKey.generate()
        self.seal_key = seal.generate_key()
        self.scheduler = ManualScheduler()
        self.lock = SimulatedLock(
            scheduler=self.scheduler,
            clock=self.now,
            motor_seconds=MOTOR_SECONDS,
            keypad_limits=limits,
        )
        self.agent: HubAgent | None = None
        self._versions = 0

    def now(self) -> float:
        return T + self.scheduler.now

    @property
    def credentials(self) -> CredentialManager:
        assert self.agent is not None and self.agent.credentials is not None
        return self.agent.credentials

    def boot(self) -> None:
        journal = Journal(self.path / "journal.db", hub_id=HUB_ID, signing_key=self.issuer)
        issuer_keys = {"k1": public_key_bytes(self.issuer.public_key())}
        credentials = CredentialManager(
            hub_id=HUB_ID,
            store=CredentialStore(self.path / "credentials.db"),
            locks={DOOR: self.lock},
            seal_key=self.seal_key,
            issuer_keys=issuer_keys,
            journal=journal,
            clock=self.now,
            scheduler=self.scheduler,
        )
        self.agent = HubAgent(
            hub_id=HUB_ID,
            journal=journal,
            locks={DOOR: self.lock},
            verifier=GrantVerifier(hub_id=HUB_ID, issuer_keys=issuer_keys, clock=self.now),
            clock=self.now,
            scheduler=self.scheduler,
            credentials=credentials,
        )
        credentials.start()

    def stop(self) -> None:
        """Stop the hub without closing the lock (the agent would close it)."""
        if self.agent is not None:
            assert self.agent.credentials is not None
            self.agent.credentials.stop()
            self.agent.journal.close()
            self.agent = None

    def credential(self, credential_id: str, pin: str, **changes: Any) -> dict[str, Any]:
        sealed = seal.seal(
            seal.public_key_bytes(self.seal_key), pin.encode(), hub_id=HUB_ID, context=credential_id
        )
        values = {"id": credential_id, "access_point": DOOR, "name": "Guest"}
        return {**values, "pin": b64encode(sealed), **changes}

    def apply(self, *credentials: dict[str, Any]) -> dict[str, str]:
        """Apply the next desired document holding exactly `credentials`; the report."""
        self._versions += 1
        doc = {"hub": HUB_ID, "version": self._versions, "issued_at": T, "timezone": "UTC"}
        payload = sign_shadow({**doc, "credentials": list(credentials)}, self.issuer, "k1")
        report = self.credentials.apply(payload)
        assert report is not None
        return dict(report.credentials)

    def slot_of(self, credential_id: str) -> int | None:
        total = self.lock.keypad_attributes().limits.total_users
        slots = range(1, total + 1)
        return next(
            (i for i in slots if self.credentials.credential_at(DOOR, i) == credential_id), None
        )

    def events(self, kind: str) -> list[Event]:
        assert self.agent is not None
        return [e for e in self.agent.journal.unacknowledged(limit=10_000) if e.kind == kind]


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Any]:
    hubs: list[Hub] = []

    def make(limits: KeypadLimits | None = None) -> Hub:
        hub = Hub(tmp_path, limits)
        hub.boot()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.stop()
        hub.lock.close()


def test_a_late_unlock_by_a_revoked_code_is_not_credited_to_its_successor(make_hub) -> None:
    hub = make_hub()
    assert hub.apply(hub.credential(OLD, OLD_PIN)) == {OLD: "active"}
    assert hub.slot_of(OLD) == 1
    # The guest types the old code; the lock accepts it and starts its motor.
    assert hub.lock.keypad_entry(OLD_PIN).error is None

    # Meanwhile the resident swaps the code: one document revokes it and adds a new one.
    assert hub.apply(hub.credential(NEW, NEW_PIN, uses=1)) == {NEW: "active"}

    hub.scheduler.advance(MOTOR_SECONDS)  # now the lock reports the unlock, user 1

    unlocked = hub.events(EventKind.LOCK_UNLOCKED)
    assert len(unlocked) == 1  # on record, as a keypad unlock ...
    assert "grant_id" not in unlocked[0].data  # ... credited to no code now held
    assert hub.credentials.report().credentials == {NEW: "active"}  # its one use is intact
    assert hub.slot_of(NEW) == 2  # the slot just freed waits while another is free


def test_the_least_recently_freed_slot_is_reused_first_across_a_restart(make_hub) -> None:
    hub = make_hub(KeypadLimits(total_users=3, pin_credentials=3))
    codes = {
        name: hub.credential(name, pin)
        for name, pin in (("grt-a", "61728394"), ("grt-b", "72839405"), ("grt-c", "83940516"))
    }
    hub.apply(*codes.values())
    assert [hub.slot_of(name) for name in codes] == [1, 2, 3]
    hub.apply(codes["grt-a"], codes["grt-c"])  # slot 2 freed first ...
    hub.apply(codes["grt-c"])  # ... then slot 1

    hub.stop()
    hub.boot()

    assert hub.apply(codes["grt-c"], hub.credential("grt-d", "94051627"))["grt-d"] == "active"
    assert hub.slot_of("grt-d") == 2
    hub.apply(codes["grt-c"], hub.credential("grt-d", "94051627"), codes["grt-a"])
    assert hub.slot_of("grt-a") == 1
    assert hub.lock.keypad_entry("61728394").user_index == 1


def test_a_just_freed_slot_is_reused_when_it_is_the_only_one(make_hub) -> None:
    """The residual risk: with no other slot free, the new code takes the old one's."""
    hub = make_hub(KeypadLimits(total_users=1, pin_credentials=1))
    hub.apply(hub.credential(OLD, OLD_PIN))

    assert hub.apply(hub.credential(NEW, NEW_PIN)) == {NEW: "active"}
    assert hub.slot_of(NEW) == 1
    assert hub.lock.keypad_entry(OLD_PIN).error is not None
