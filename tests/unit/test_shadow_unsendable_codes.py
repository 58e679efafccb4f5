"""The hub's desired document (`grants.shadow.build_desired`) when one keypad grant cannot
be put into it: that one code is left out (it is not programmed: fail closed), and the
document still goes out, so every other change, above all a revocation, reaches the hub.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from doorstep.grants.shadow import build_desired
from doorstep.protocol.grants import GrantSigner, public_key_bytes
from doorstep.protocol.shadow import verify_shadow
from doorstep.sql import Tx, Writer

NOW = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
HUB, HOME, DOOR, OWNER = "hub-0123456789abcdef", "home-1", "ap-1", "usr-owner"
SEALED = "c2VhbGVkLXBpbg"  # what the hub would open; any base64url will do here


def run(writer: Writer, job: Any) -> Any:
    return writer.submit(job).result(timeout=10)


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
        "INSERT INTO access_points (id, home_id, slug, name, kind, created_at, hub_id)"
        " VALUES (?, ?, 'front', 'Front', 'door', ?, ?)",
        (DOOR, HOME, at, HUB),
    )
    tx.run(
        "INSERT INTO hub_shadows (hub_id, version, changed_at, reported_version, reported)"
        " VALUES (?, 7, ?, 6, '{}')",
        (HUB, at),
    )


def _grant(
    tx: Tx, grant_id: str, kind: str, starts: datetime | None, ends: datetime | None
) -> None:
    tx.run("INSERT INTO access_grants (id, home_id, access_point_id, purpose, method, label,"
           " kind, timezone, starts_at, ends_at, windows, require_geofence, notes, created_by,"
           " created_at, pin_sealed) VALUES (?, ?, ?, 'guest', 'keypad', 'Guest', ?,"
           " 'Europe/Paris', ?, ?, '[]', ?, '', ?, ?, ?)",
           (grant_id, HOME, DOOR, kind, tx.time(starts), tx.time(ends), False, OWNER,
            tx.time(NOW), SEALED))  # fmt: skip


@pytest.fixture
def writer(migrated_engine: Engine) -> Iterator[Writer]:
    writer = Writer(migrated_engine)
    writer.start()
    run(writer, _seed)
    yield writer
    writer.stop()


@pytest.mark.parametrize(
    ("starts", "ends"),
    [
        # Started before 2000: a lock's year-day schedule cannot count from before then.
        (datetime(1999, 12, 31, 12, 0, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        # 02:50 CEST to 02:20 CET on the night the clocks go back: half an hour, but on
        # the wall clock it ends before it starts (entered with offsets, as the API takes).
        (datetime(2026, 10, 25, 0, 50, tzinfo=UTC), datetime(2026, 10, 25, 1, 20, tzinfo=UTC)),
    ],
    ids=["before-2000", "autumn-hour"],
)
def test_a_code_the_document_cannot_hold_does_not_hold_back_the_others(
    writer: Writer, starts: datetime, ends: datetime
) -> None:
    signer = GrantSigner(Ed25519PrivateKey.generate())
    run(writer, lambda tx: _grant(tx, "agr-odd", "range", starts, ends))
    run(writer, lambda tx: _grant(tx, "agr-kept", "always", None, None))

    payload = run(writer, lambda tx: build_desired(tx, hub_id=HUB, now=NOW, signer=signer))

    keys = {signer.kid: public_key_bytes(signer.private_key.public_key())}
    doc = verify_shadow(payload, keys, HUB)
    assert doc.version == 7
    assert [credential.id for credential in doc.credentials] == ["agr-kept"]
