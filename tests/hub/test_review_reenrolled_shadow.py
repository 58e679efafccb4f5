"""A hub enrolled again on the same data directory (hub.json removed, a new claim code:
a new hub id) must not keep the keypad codes of its former enrollment, nor take the
former hub's desired version as its own.

Before, `credentials.db` still held the former hub's applied document: its codes were
put back on the lock at every start, and the new hub's documents (which start again at
version 1) were refused as stale until they caught up, so none of the new home's codes or
revocations reached the lock meanwhile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub.credential_store import CredentialStore
from doorstep.hub.credentials import CredentialManager
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.hub.scheduling import ManualScheduler
from doorstep.protocol import seal
from doorstep.protocol.grants import key_id_for, public_key_bytes
from doorstep.protocol.messages import b64encode
from doorstep.protocol.shadow import sign_shadow

T = 1_800_000_000
DOOR = "front"
FORMER, CURRENT = "hub-00000000000000aa", "hub-00000000000000bb"
ISSUER = Ed25519PrivateKey.generate()
KID = key_id_for(ISSUER.public_key())
SEAL_KEY = seal.generate_key()


def _document(hub_id: str, version: int, *codes: tuple[str, str]) -> bytes:
    credentials: list[dict[str, Any]] = [
        {
            "id": credential_id,
            "access_point": DOOR,
            "name": "Guest",
            "pin": b64encode(
                seal.seal(
                    seal.public_key_bytes(SEAL_KEY),
                    pin.encode(),
                    hub_id=hub_id,
                    context=credential_id,
                )
            ),
        }
        for credential_id, pin in codes
    ]
    doc = {
        "v": 1,
        "hub": hub_id,
        "version": version,
        "issued_at": T,
        "timezone": "Europe/Paris",
        "credentials": credentials,
        "revoked_tokens": [],
    }
    return sign_shadow(doc, ISSUER, KID)


def _manager(data_dir: Path, hub_id: str, lock: SimulatedLock) -> CredentialManager:
    key = Ed25519PrivateKey.generate()
    return CredentialManager(
        hub_id=hub_id,
        store=CredentialStore(data_dir / "credentials.db"),
        locks={DOOR: lock},
        seal_key=SEAL_KEY,
        issuer_keys={KID: public_key_bytes(ISSUER.public_key())},
        journal=Journal(data_dir / f"journal-{hub_id}.db", hub_id=hub_id, signing_key=key),
        clock=lambda: float(T),
        scheduler=ManualScheduler(),
    )


def test_a_hub_enrolled_again_drops_its_former_codes_and_takes_its_new_document(
    tmp_path: Path,
) -> None:
    lock = SimulatedLock(clock=lambda: float(T))  # the same lock, keeping its tables
    former = _manager(tmp_path, FORMER, lock)
    former.start()
    assert former.apply(_document(FORMER, 9, ("grt-old-guest", "4711"))) is not None
    assert lock.get_pin(1) is not None
    former.stop()

    current = _manager(tmp_path, CURRENT, lock)
    current.start()
    try:
        assert lock.get_user(1) is None  # the former home's guest code no longer opens
        assert lock.get_pin(1) is None
        report = current.apply(_document(CURRENT, 1, ("grt-new-guest", "2580")))
        assert report is not None  # not refused as stale
        assert (report.hub, report.version) == (CURRENT, 1)
        assert report.credentials == {"grt-new-guest": "active"}
    finally:
        current.stop()
