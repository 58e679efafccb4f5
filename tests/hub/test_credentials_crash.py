"""A hub that dies half-way through applying a desired document must not bring back a
code that document revoked: the restart settles towards the newest document it took in,
never back to the one before (`CredentialManager.apply`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub.credential_store import CredentialStore
from doorstep.hub.credentials import CredentialManager
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.hub.keypad import KeypadLimits
from doorstep.hub.scheduling import ManualScheduler
from doorstep.protocol import seal
from doorstep.protocol.grants import public_key_bytes
from doorstep.protocol.messages import b64encode
from doorstep.protocol.shadow import sign_shadow

T = 1_800_000_000
HUB_ID = "hub-0123456789abcdef"
DOOR = "front"
REVOKED_PIN, NEW_PIN = "47106283", "58203164"


class PowerCut(BaseException):
    """The hub loses power: nothing after this point runs (not an error it handles)."""


class CutAfterClear(SimulatedLock):
    """A lock that takes the ClearUser, then the hub dies before writing anything down."""

    armed = False

    def clear_user(self, user_index: int) -> None:
        super().clear_user(user_index)
        if self.armed:
            raise PowerCut


class Hub:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.issuer = Ed25519PrivateKey.generate()
        self.seal_key = seal.generate_key()
        self.lock = CutAfterClear(scheduler=ManualScheduler(), clock=lambda: T)
        self.journal = Journal(path / "journal.db", hub_id=HUB_ID, signing_key=self.issuer)
        self.managers: list[CredentialManager] = []

    def boot(self) -> CredentialManager:
        manager = CredentialManager(
            hub_id=HUB_ID,
            store=CredentialStore(self.path / "credentials.db"),
            locks={DOOR: self.lock},
            seal_key=self.seal_key,
            issuer_keys={"k1": public_key_bytes(self.issuer.public_key())},
            journal=self.journal,
            clock=lambda: T,
            scheduler=ManualScheduler(),
        )
        manager.start()
        self.managers.append(manager)
        return manager

    def credential(self, credential_id: str, pin: str) -> dict[str, Any]:
        sealed = seal.seal(
            seal.public_key_bytes(self.seal_key), pin.encode(), hub_id=HUB_ID, context=credential_id
        )
        return {
            "id": credential_id,
            "access_point": DOOR,
            "name": "Guest",
            "pin": b64encode(sealed),
        }

    def desired(self, version: int, *credentials: dict[str, Any]) -> bytes:
        doc = {"hub": HUB_ID, "version": version, "issued_at": T, "timezone": "UTC"}
        return sign_shadow({**doc, "credentials": list(credentials)}, self.issuer, "k1")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    made = Hub(tmp_path)
    yield made
    for manager in made.managers:
        manager.stop()
    made.journal.close()
    made.lock.close()


def test_a_revoked_code_stays_off_after_a_power_cut_during_the_revocation(hub: Hub) -> None:
    first = hub.boot()
    first.apply(hub.desired(1, hub.credential("grt-revoked", REVOKED_PIN)))
    assert hub.lock.keypad_entry(REVOKED_PIN).error is None
    hub.lock.manual_lock()

    hub.lock.armed = True  # the code leaves the lock, and the hub dies at that moment
    with pytest.raises(PowerCut):
        first.apply(hub.desired(2))
    hub.lock.armed = False

    # Power back, and no broker yet: the hub goes by what it wrote down.
    hub.boot()

    assert hub.lock.get_user(1) is None
    assert hub.lock.keypad_entry(REVOKED_PIN).error is not None


def test_a_revoked_code_stays_off_after_a_power_cut_while_its_slot_is_reused(
    hub: Hub,
) -> None:
    """The revoked code's slot goes to a new code in the same document (a lock with one
    slot: a just-freed slot is reused only when no other is free); the hub dies while
    programming that one (after it wrote the slot down)."""
    hub.lock.close()
    hub.lock = CutAfterClear(
        scheduler=ManualScheduler(),
        clock=lambda: T,
        keypad_limits=KeypadLimits(total_users=1, pin_credentials=1),
    )
    first = hub.boot()
    first.apply(hub.desired(1, hub.credential("grt-revoked", REVOKED_PIN)))

    original_set_pin = hub.lock.set_pin

    def set_pin(*args: Any, **kwargs: Any) -> Any:
        raise PowerCut

    hub.lock.set_pin = set_pin  # type: ignore[method-assign]
    with pytest.raises(PowerCut):
        first.apply(hub.desired(2, hub.credential("grt-new", NEW_PIN)))
    hub.lock.set_pin = original_set_pin  # type: ignore[method-assign]

    second = hub.boot()

    assert hub.lock.keypad_entry(REVOKED_PIN).error is not None
    assert second.report().credentials == {"grt-new": "active"}
    verdict = hub.lock.keypad_entry(NEW_PIN)
    assert (verdict.error, verdict.user_index) == (None, 1)
