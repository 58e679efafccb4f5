"""The most keypad codes one hub holds (`MAX_CREDENTIALS`, what its desired document can
carry), at the two places that keep it, and the most one door holds:

- making a code (`grants.service.create_grant`) counts the hub's codes under the lock its
  shadow bump takes, so two codes made at once for the last place do not both get it
  (SQLite and PostgreSQL);
- the document builder (`grants.shadow.build_desired`) never puts more in, should the
  store hold more anyway: it leaves the newest out and still signs the document, so
  every revocation in it reaches the hub.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from doorstep.accounts.models import PrincipalKind
from doorstep.accounts.service import Principal
from doorstep.errors import Conflict
from doorstep.grants import schedule
from doorstep.grants.models import AccessGrant, HubShadow, Method
from doorstep.grants.service import GrantSpec, create_grant
from doorstep.grants.shadow import build_desired
from doorstep.permissions import PrincipalRole
from doorstep.protocol.grants import GrantSigner, public_key_bytes
from doorstep.protocol.shadow import MAX_CREDENTIALS, verify_shadow
from doorstep.sql import Tx
from polling import poll
from postgres import committed

NOW = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
HUB, HOME, OWNER = "hub-0123456789abcdef", "home-1", "usr-owner"
SEALED = "c2VhbGVkLXBpbg"  # stands for a sealed code
PER_DOOR = 25  # `grants.service.MAX_CODES_PER_DOOR`
RESIDENT = Principal(PrincipalKind.USER, OWNER, PrincipalRole.RESIDENT)


def _seed(engine: Engine, codes: int, doors: int) -> None:
    """A home whose hub has `doors` doors (`d0`, `d1`, ...) and `codes` keypad codes in
    force on them, oldest first (`agr-0000` ...), 25 a door at most."""

    def job(tx: Tx) -> None:
        at = tx.time(NOW)
        tx.run("INSERT INTO users (id, email, name, password_hash, role, active, created_at)"
               " VALUES (?, 'owner@example.org', 'Owner', 'x', 'resident', ?, ?)",
               (OWNER, True, at))  # fmt: skip
        tx.run("INSERT INTO homes (id, owner_id, name, address, latitude, longitude, geofence_m,"
               " timezone, in_home_enabled, created_at, allowed_weekdays, approval_mode,"
               " approval_timeout_seconds, pet_notes, placement_notes) VALUES"
               " (?, ?, 'Home', 'Street 1', 0, 0, 50, 'Europe/Paris', ?, ?, 127, 'auto', 120,"
               " '', '')", (HOME, OWNER, True, at))  # fmt: skip
        seal_key = X25519PrivateKey.generate().public_key().public_bytes_raw()
        tx.run("INSERT INTO hubs (id, home_id, online, created_at, public_key, claimed_at, epoch,"
               " seal_key) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
               (HUB, HOME, True, at, b"k" * 32, at, seal_key))  # fmt: skip
        for door in range(doors):
            tx.run("INSERT INTO access_points (id, home_id, slug, name, kind, created_at, hub_id)"
                   " VALUES (?, ?, ?, 'Door', 'door', ?, ?)",
                   (f"ap-{door}", HOME, f"d{door}", at, HUB))  # fmt: skip
        tx.run("INSERT INTO hub_shadows (hub_id, version, changed_at, reported_version,"
               " reported) VALUES (?, 7, ?, 6, '{}')", (HUB, at))  # fmt: skip
        for number in range(codes):
            tx.run("INSERT INTO access_grants (id, home_id, access_point_id, purpose, method,"
                   " label, kind, timezone, windows, require_geofence, notes, created_by,"
                   " created_at, pin_sealed) VALUES (?, ?, ?, 'guest', 'keypad', 'Guest',"
                   " 'always', 'Europe/Paris', '[]', ?, '', ?, ?, ?)",
                   (f"agr-{number:04d}", HOME, f"ap-{number // PER_DOOR}", False, OWNER,
                    tx.time(NOW + timedelta(seconds=number)), SEALED))  # fmt: skip

    committed(engine, job)


def _new_code(session: Session, door: str) -> str:
    spec = GrantSpec(access_point=door, label="New", kind=schedule.ScheduleKind.ALWAYS,
                     method=Method.KEYPAD)  # fmt: skip
    made = create_grant(session, owner=RESIDENT, home_id=HOME, spec=spec, now=NOW,
                        invite_url="https://doorstep.test/guest/accept")  # fmt: skip
    assert made.pin is not None
    return made.grant.id


def _count_and_version(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        grants = session.scalar(select(func.count()).select_from(AccessGrant))
        version = session.scalar(select(HubShadow.version).where(HubShadow.hub_id == HUB))
    return int(grants or 0), int(version or 0)


def _waiting_on_a_lock(engine: Engine, pid: int) -> bool:
    sql = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?"
    row = committed(engine, lambda tx: tx.one(sql, (pid,)))
    return row is not None and row[0] == "Lock"


def test_two_codes_made_at_once_for_the_last_place_do_not_both_get_it(
    migrated_engine: Engine,
) -> None:
    """The first takes the last place and holds its transaction open; the second, on
    another door of the same hub, waits for it (PostgreSQL: on the shadow row; SQLite:
    on the write lock), then counts it and is refused."""
    _seed(migrated_engine, MAX_CREDENTIALS - 1, doors=11)
    sessions = sessionmaker(migrated_engine)
    postgres = migrated_engine.dialect.name == "postgresql"
    with ThreadPoolExecutor(1) as pool, sessions() as second:
        # (Its transaction, on PostgreSQL, begins here: READ COMMITTED, each statement
        # still sees what was committed before it.)
        pid = second.scalar(select(func.pg_backend_pid())) if postgres else None
        with sessions() as first:  # closed (rolled back, if need be) before the wait below
            _new_code(first, "d10")
            racing = pool.submit(_new_code, second, "d9")
            if pid is not None:
                waited = poll(lambda: _waiting_on_a_lock(migrated_engine, pid), bool, 10)
                assert waited, "the second code was counted without waiting for the first"
            first.commit()
        with pytest.raises(Conflict, match=f"{MAX_CREDENTIALS} keypad codes"):
            racing.result(timeout=30)
        second.rollback()

    assert _count_and_version(migrated_engine) == (MAX_CREDENTIALS, 8)


def test_a_code_made_when_the_hub_is_full_changes_nothing(migrated_engine: Engine) -> None:
    _seed(migrated_engine, MAX_CREDENTIALS, doors=11)
    with sessionmaker(migrated_engine)() as session:
        with pytest.raises(Conflict) as refused:
            _new_code(session, "d10")
        session.rollback()
    assert refused.value.details == {"limit": MAX_CREDENTIALS}
    assert _count_and_version(migrated_engine) == (MAX_CREDENTIALS, 7)


@pytest.fixture
def over_full(migrated_engine: Engine) -> Iterator[Engine]:
    """A hub whose store holds three codes more than it can (made before the limit)."""
    _seed(migrated_engine, MAX_CREDENTIALS + 3, doors=11)
    yield migrated_engine


def test_the_document_leaves_the_newest_codes_out_and_is_still_signed(
    over_full: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    signer = GrantSigner(Ed25519PrivateKey.generate())

    with caplog.at_level(logging.ERROR, logger="doorstep.grants.shadow"):
        payload = committed(
            over_full, lambda tx: build_desired(tx, hub_id=HUB, now=NOW, signer=signer)
        )

    keys = {signer.kid: public_key_bytes(signer.private_key.public_key())}
    doc = verify_shadow(payload, keys, HUB)
    ids = [credential.id for credential in doc.credentials]
    assert ids == [f"agr-{number:04d}" for number in range(MAX_CREDENTIALS)]
    assert "agr-0250, agr-0251, agr-0252" in caplog.text


def test_a_door_full_of_ended_codes_takes_a_new_one(migrated_engine: Engine) -> None:
    """The door limit counts codes in force: ended ones are off the lock."""
    _seed(migrated_engine, PER_DOOR, doors=1)
    with sessionmaker(migrated_engine)() as session:
        with pytest.raises(Conflict, match=f"already has {PER_DOOR} codes"):
            _new_code(session, "d0")
        session.rollback()
    ended = committed(migrated_engine, lambda tx: tx.run(
        "UPDATE access_grants SET ends_at = ? WHERE id = 'agr-0000'",
        (tx.time(NOW - timedelta(minutes=1)),)))  # fmt: skip
    assert ended == 1

    with sessionmaker(migrated_engine)() as session:
        _new_code(session, "d0")
        session.commit()
        with pytest.raises(Conflict, match=f"already has {PER_DOOR} codes"):
            _new_code(session, "d0")  # 24 in force and the new one: full again
        session.rollback()
