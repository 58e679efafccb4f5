"""Keys taken up while `serve` runs (`grants.rotation`) reach hubs' desired documents
(`ShadowPublisher.use_keys`): a document names the keys current when its version was read,
even when they are swapped while it is being built, so a hub that reports a version raised
for a new key has applied a document naming that key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from doorstep.grants.shadow import ShadowPublisher
from doorstep.protocol.grants import GrantSigner, public_key_bytes
from doorstep.protocol.shadow import verify_shadow
from doorstep.sql import Tx, Writer
from polling import wait_until

NOW = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
HUB, HOME, OWNER = "hub-0123456789abcdef", "home-1", "usr-owner"


def _seed(tx: Tx) -> None:
    at = tx.time(NOW)
    tx.run(
        "INSERT INTO users (id, email, name, password_hash, role, active, created_at)"
        " VALUES (?, 'owner@example.org', 'Owner', 'x', 'resident', ?, ?)",
        (OWNER, True, at),
    )
    tx.run("INSERT INTO homes (id, owner_id, name, address, latitude, longitude, geofence_m,"
           " timezone, in_home_enabled, created_at, allowed_weekdays, approval_mode,"
           " approval_timeout_seconds, pet_notes, placement_notes) VALUES"
           " (?, ?, 'Home', 'Street 1', 0, 0, 50, 'Europe/Paris', ?, ?, 127, 'auto', 120,"
           " '', '')", (HOME, OWNER, True, at))  # fmt: skip
    tx.run("INSERT INTO hubs (id, home_id, online, created_at, public_key, claimed_at, epoch)"
           " VALUES (?, ?, ?, ?, ?, ?, 1)", (HUB, HOME, True, at, b"k" * 32, at))  # fmt: skip
    tx.run(
        "INSERT INTO hub_shadows (hub_id, version, changed_at, reported_version, reported)"
        " VALUES (?, 7, ?, 6, '{}')",
        (HUB, at),
    )


@pytest.fixture
def writer(migrated_engine: Engine) -> Iterator[Writer]:
    writer = Writer(migrated_engine)
    writer.start()
    writer.submit(_seed).result(timeout=10)
    yield writer
    writer.stop()


def _keys(signer: GrantSigner) -> dict[str, bytes]:
    return {signer.kid: public_key_bytes(signer.private_key.public_key())}


class _SwapWhileBuilding:
    """A clock whose first reading, taken as the document is being built, is when the
    service takes up other keys."""

    def __init__(self, swap: GrantSigner) -> None:
        self.publisher: ShadowPublisher
        self._swap: GrantSigner | None = swap

    def now(self) -> datetime:
        if self._swap is not None:
            self.publisher.use_keys(self._swap, _keys(self._swap))
            self._swap = None
        return NOW

    def timestamp(self) -> float:
        return NOW.timestamp()


def test_a_document_names_the_keys_current_when_its_version_was_read(writer: Writer) -> None:
    old, new = GrantSigner(Ed25519PrivateKey.generate()), GrantSigner(Ed25519PrivateKey.generate())
    sent: list[bytes] = []
    clock = _SwapWhileBuilding(new)
    publisher = ShadowPublisher(
        writer, old, clock, lambda _hub, payload: sent.append(payload), issuer_keys=_keys(old)
    )
    clock.publisher = publisher

    publisher.publish(HUB)

    wait_until(lambda: sent, 10, "the document to be sent")
    document = verify_shadow(sent[0], _keys(new), HUB)  # signed by the new key
    assert document.trusted_keys() == _keys(new)
    assert len(sent) == 1
