"""Entry decisions as an attacker or bad timing would have them: two decisions racing
for one door, a resident's approval that comes after the courier was suspended or the
delivery's window closed, and grants that would outlive the window they were signed in.

On PostgreSQL two decisions can run in concurrent transactions (several `serve`
processes; the hot writer process beside the service's writer thread), so both may read
the door free. The database's one-open-entry-per-door index lets only one of them in;
the other must be an ordinary, audited denial (`entry_in_progress`, no grant, no
command), not a server error with nothing on record."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine

from doorstep.access import remote
from doorstep.access import service as access
from doorstep.accounts.models import PrincipalKind
from doorstep.accounts.service import Principal
from doorstep.errors import Conflict
from doorstep.permissions import PrincipalRole
from doorstep.protocol.grants import (
    DEFAULT_LEEWAY_SECONDS,
    GrantRefused,
    GrantSigner,
    GrantVerifier,
    public_key_bytes,
)
from doorstep.protocol.messages import GENESIS_HASH, Event, EventKind, Reply, b64decode
from doorstep.security import token_digest
from doorstep.settings import EntrySettings
from doorstep.sql import Tx
from polling import poll
from postgres import committed

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OWNER, COURIER, CARRIER = "usr-owner", "usr-courier", "car-a"
HOME, HUB, DOOR, DELIVERY = "home-a", "hub-a", "ap-a", "dlv-a"
TOKEN, BARCODE = "courier-token", "PKG-1"
KEY = Ed25519PrivateKey.generate()
SETTINGS = EntrySettings(require_proof_of_possession=False)
RESIDENT = Principal(PrincipalKind.USER, OWNER, PrincipalRole.RESIDENT, None)
AT_THE_DOOR = access.EntryRequest(DELIVERY, BARCODE, 0.0, 0.0, 5.0)

Job = Callable[[Tx], Any]


def _seed(tx: Tx) -> None:
    """A home with one door on an online hub, and a booked delivery to it with one
    parcel, for a courier signed in with `TOKEN`."""
    at = tx.time(NOW)
    tx.run("INSERT INTO carriers (id, name, created_at) VALUES (?, 'Carrier', ?)", (CARRIER, at))
    for user, role, carrier in ((OWNER, "resident", None), (COURIER, "courier", CARRIER)):
        tx.run("INSERT INTO users (id, email, name, password_hash, role, carrier_id, active,"
               " created_at) VALUES (?, ?, ?, 'x', ?, ?, ?, ?)",
               (user, f"{user}@example.org", user, role, carrier, True, at))  # fmt: skip
    tx.run("INSERT INTO access_tokens (digest, principal_kind, principal_id, expires_at,"
           " created_at) VALUES (?, 'user', ?, ?, ?)",
           (token_digest(TOKEN), COURIER, tx.time(NOW + timedelta(hours=1)), at))  # fmt: skip
    tx.run("INSERT INTO homes (id, owner_id, name, address, latitude, longitude, geofence_m,"
           " timezone, in_home_enabled, created_at, allowed_weekdays, approval_mode,"
           " approval_timeout_seconds, pet_notes, placement_notes) VALUES"
           " (?, ?, 'Home', 'Street 1', 0, 0, 50, 'UTC', ?, ?, 127, 'auto', 120, '', '')",
           (HOME, OWNER, True, at))  # fmt: skip
    tx.run("INSERT INTO hubs (id, home_id, online, created_at, public_key, claimed_at, epoch)"
           " VALUES (?, ?, ?, ?, ?, ?, 1)",
           (HUB, HOME, True, at, public_key_bytes(KEY.public_key()), at))  # fmt: skip
    tx.run("INSERT INTO access_points (id, home_id, slug, name, kind, created_at, hub_id)"
           " VALUES (?, ?, 'front', 'Front', 'door', ?, ?)", (DOOR, HOME, at, HUB))  # fmt: skip
    tx.run("INSERT INTO deliveries (id, carrier_id, home_id, access_point_id, courier_id,"
           " window_start, window_end, reference, status, created_at)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, '', 'booked', ?)",
           (DELIVERY, CARRIER, HOME, DOOR, COURIER, tx.time(NOW - timedelta(hours=1)),
            tx.time(NOW + timedelta(hours=1)), at))  # fmt: skip
    tx.run("INSERT INTO packages (id, delivery_id, barcode) VALUES ('pkg-1', ?, ?)",
           (DELIVERY, BARCODE))  # fmt: skip


def _courier_asks(tx: Tx) -> access.EntryDecision:
    """The courier at the door asks to enter with the parcel (one request)."""
    return access.decide(tx, token=TOKEN, request=AT_THE_DOOR, now=NOW, settings=SETTINGS,
                         signer=GrantSigner(KEY))  # fmt: skip


def _resident_unlocks(tx: Tx) -> access.EntryDecision:
    return remote.remote_unlock(tx, resident=RESIDENT, home_id=HOME, slug="front", now=NOW,
                                settings=SETTINGS, signer=GrantSigner(KEY))  # fmt: skip


def _race(engine: Engine, first: Job, second: Job) -> Any:
    """`first` runs and holds its transaction open; `second`, in another connection,
    reads the door free and blocks on inserting its entry; then `first` commits and
    `second` finishes (committed). Returns what `second` returned, or what it raised."""
    first_connection, second_connection = engine.raw_connection(), engine.raw_connection()
    try:
        first_tx = Tx(first_connection.driver_connection, "postgresql")
        second_tx = Tx(second_connection.driver_connection, "postgresql")
        pid = second_tx.one("SELECT pg_backend_pid()")
        second_connection.commit()
        first(first_tx)
        with ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(second, second_tx)
            waiting = poll(lambda: _wait_event(engine, pid), lambda kind: kind == "Lock", 10)
            assert waiting == "Lock", f"the second decision never waited on a lock ({waiting})"
            first_connection.commit()
            try:
                result = blocked.result(timeout=10)
            except Exception as exc:
                second_connection.rollback()
                return exc
        second_connection.commit()
        return result
    finally:
        first_connection.close()
        second_connection.close()


def _wait_event(engine: Engine, pid: Any) -> Any:
    row = committed(engine, lambda tx: tx.one(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", pid))  # fmt: skip
    return row[0] if row else None


def _entries(engine: Engine) -> list[tuple[Any, ...]]:
    sql = "SELECT state, reason FROM entries ORDER BY state"
    return list(committed(engine, lambda tx: tx.all(sql)))


def _audited(engine: Engine, entry_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The entry's audit records: action and data (decoded: SQLite keeps JSON as text)."""
    sql = "SELECT action, data FROM audit_events WHERE subject = ? ORDER BY seq"
    rows = committed(engine, lambda tx: tx.all(sql, (entry_id,)))
    return [
        (action, orjson.loads(data) if isinstance(data, str) else data) for action, data in rows
    ]


@pytest.mark.postgres
def test_two_requests_racing_for_one_parcel_let_one_in_and_deny_the_other_on_record(
    pg_engine: Engine,
) -> None:
    committed(pg_engine, _seed)

    second = _race(pg_engine, _courier_asks, _courier_asks)

    assert isinstance(second, access.EntryDecision), f"the second request failed: {second!r}"
    assert not second.authorized and second.command is None
    assert (second.entry.state, second.entry.reason) == ("denied", "entry_in_progress")
    assert _entries(pg_engine) == [("authorized", None), ("denied", "entry_in_progress")]
    [(action, data)] = _audited(pg_engine, second.entry.id)
    assert action == "entry:denied"
    assert data["reason"] == "entry_in_progress"


@pytest.mark.postgres
def test_a_remote_unlock_racing_a_courier_for_the_door_is_refused_as_a_conflict(
    pg_engine: Engine,
) -> None:
    committed(pg_engine, _seed)

    second = _race(pg_engine, _courier_asks, _resident_unlocks)

    assert isinstance(second, Conflict), f"not refused as a conflict: {second!r}"
    assert _entries(pg_engine) == [("authorized", None)]


def test_an_approval_after_the_courier_was_suspended_issues_no_grant(
    migrated_engine: Engine,
) -> None:
    """The carrier suspends the courier ("stop a courier at once") while the resident's
    approval is pending; the resident then approves. The entry is declined as the
    courier's next request would be (`courier_inactive`), and no grant is signed."""
    committed(migrated_engine, _seed)
    committed(migrated_engine, lambda tx: tx.run("UPDATE homes SET approval_mode = 'ask'"))
    waiting = committed(migrated_engine, _courier_asks)
    assert waiting.entry.state == "awaiting_approval"
    committed(migrated_engine, lambda tx: tx.run(
        "UPDATE users SET active = ? WHERE id = ?", (False, COURIER)))  # fmt: skip

    answer = committed(migrated_engine, lambda tx: access.answer_approval(
        tx, resident=RESIDENT, entry_id=waiting.entry.id, approve=True,
        now=NOW + timedelta(seconds=30), settings=SETTINGS, signer=GrantSigner(KEY),
    ))  # fmt: skip

    assert answer.command is None
    assert (answer.entry.state, answer.entry.reason) == ("declined", "courier_inactive")
    actions = [action for action, _ in _audited(migrated_engine, waiting.entry.id)]
    assert actions == ["entry:awaiting_approval", "entry:declined"]
    assert committed(migrated_engine, lambda tx: tx.one(
        "SELECT token_id, grant_expires_at FROM entries WHERE id = ?", (waiting.entry.id,)
    )) == (None, None)  # fmt: skip


def _window_ends_in(seconds: int) -> Job:
    """The delivery window ends `seconds` after NOW (before it, if negative)."""
    return lambda tx: tx.run(
        "UPDATE deliveries SET window_end = ?", (tx.time(NOW + timedelta(seconds=seconds)),)
    )


def _claims(decision: access.EntryDecision, at: datetime) -> Any:
    assert decision.command is not None and decision.command.grant is not None
    verifier = GrantVerifier(
        hub_id=HUB, issuer_keys={GrantSigner(KEY).kid: public_key_bytes(KEY.public_key())},
        clock=at.timestamp,
    )  # fmt: skip
    return verifier.verify(b64decode(decision.command.grant), required_scope="unlock")


def test_a_grant_asked_for_near_the_windows_end_expires_with_the_window(
    migrated_engine: Engine,
) -> None:
    """Grants live `grant_ttl_seconds` (5 minutes), but the carrier booked the courier in
    only until the window's end plus its tolerance (5 minutes): a grant signed 200 s
    after the window's end must not open the door more than 100 s later."""
    committed(migrated_engine, _seed)
    committed(migrated_engine, _window_ends_in(-200))
    window_closes = NOW + timedelta(seconds=-200 + SETTINGS.window_tolerance_seconds)
    assert window_closes < NOW + timedelta(seconds=SETTINGS.grant_ttl_seconds)

    decision = committed(migrated_engine, _courier_asks)

    assert decision.authorized
    assert _claims(decision, NOW).expires == int(window_closes.timestamp())
    with pytest.raises(GrantRefused) as refused:
        _claims(decision, window_closes + timedelta(seconds=DEFAULT_LEEWAY_SECONDS + 1))
    assert refused.value.reason == "token_expired"


def test_an_approval_after_the_delivery_window_closed_issues_no_grant(
    migrated_engine: Engine,
) -> None:
    committed(migrated_engine, _seed)
    committed(migrated_engine, lambda tx: tx.run("UPDATE homes SET approval_mode = 'ask'"))
    committed(migrated_engine, _window_ends_in(-200))
    waiting = committed(migrated_engine, _courier_asks)
    closed = NOW + timedelta(seconds=-200 + SETTINGS.window_tolerance_seconds + 1)

    late = committed(migrated_engine, lambda tx: access.answer_approval(
        tx, resident=RESIDENT, entry_id=waiting.entry.id, approve=True, now=closed,
        settings=SETTINGS, signer=GrantSigner(KEY),
    ))  # fmt: skip

    assert late.command is None
    assert (late.entry.state, late.entry.reason) == ("declined", "outside_window")


def test_an_approval_in_time_signs_a_grant_that_ends_with_the_window(
    migrated_engine: Engine,
) -> None:
    committed(migrated_engine, _seed)
    committed(migrated_engine, lambda tx: tx.run("UPDATE homes SET approval_mode = 'ask'"))
    committed(migrated_engine, _window_ends_in(-200))
    waiting = committed(migrated_engine, _courier_asks)
    answered = NOW + timedelta(seconds=30)

    approved = committed(migrated_engine, lambda tx: access.answer_approval(
        tx, resident=RESIDENT, entry_id=waiting.entry.id, approve=True, now=answered,
        settings=SETTINGS, signer=GrantSigner(KEY),
    ))  # fmt: skip

    window_closes = NOW + timedelta(seconds=-200 + SETTINGS.window_tolerance_seconds)
    assert _claims(approved, answered).expires == int(window_closes.timestamp())


GRANT = "grt-keypad"


def _keypad_code(tx: Tx) -> None:
    """A keypad code the resident gave a cleaner, for the front door."""
    tx.run("INSERT INTO access_grants (id, home_id, access_point_id, purpose, method, label,"
           " kind, timezone, windows, require_geofence, notes, created_by, created_at)"
           " VALUES (?, ?, ?, 'guest', 'keypad', 'Cleaner', 'always', 'UTC', '[]', ?, '', ?, ?)",
           (GRANT, HOME, DOOR, False, OWNER, tx.time(NOW)))  # fmt: skip


def _keypad_opens(tx: Tx) -> None:
    """The hub reports the door unlocked by the cleaner's code, as its own entry."""
    event = Event(hub=HUB, epoch=1, seq=1, event_id="evt-keypad", ts=NOW.timestamp(),
                  kind=EventKind.LOCK_UNLOCKED, prev_hash=GENESIS_HASH,
                  data={"method": "keypad", "grant_id": GRANT, "access_point": "front",
                        "entry_id": "ent-keypad"})  # fmt: skip
    access.apply_hub_event(tx, hub_id=HUB, event=event, now=NOW)


def _keypad_recorded(engine: Engine, courier_entry: str) -> None:
    """The keypad entry is on record, unlocked; the courier's, which the hub never saw,
    ended as a request made now would be refused."""
    entries = committed(engine, lambda tx: tx.all(
        "SELECT id, state, reason FROM entries ORDER BY id"))  # fmt: skip
    assert sorted(entries) == sorted([
        (courier_entry, "expired", "entry_in_progress"), ("ent-keypad", "unlocked", None),
    ])  # fmt: skip
    assert [action for action, _ in _audited(engine, "ent-keypad")] == ["entry:unlocked"]
    assert [action for action, _ in _audited(engine, courier_entry)][-1] == "entry:expired"


def test_a_keypad_unlock_beside_an_authorized_entry_ends_it_and_is_recorded(
    migrated_engine: Engine,
) -> None:
    committed(migrated_engine, _seed)
    committed(migrated_engine, _keypad_code)
    decision = committed(migrated_engine, _courier_asks)
    assert decision.entry.state == "authorized"

    committed(migrated_engine, _keypad_opens)

    _keypad_recorded(migrated_engine, decision.entry.id)


@pytest.mark.postgres
def test_a_keypad_unlock_racing_a_decision_for_the_door_is_recorded_not_an_error(
    pg_engine: Engine,
) -> None:
    """The decision commits its entry after the keypad ingest read the door free: the
    ingest's insert must not fail on the open-entry index (the door has been opened
    already), but end the decision's entry and record the keypad's."""
    committed(pg_engine, _seed)
    committed(pg_engine, _keypad_code)
    decisions: list[access.EntryDecision] = []

    second = _race(pg_engine, lambda tx: decisions.append(_courier_asks(tx)), _keypad_opens)

    assert second is None, f"the keypad ingest failed: {second!r}"
    _keypad_recorded(pg_engine, decisions[0].entry.id)


PHONE = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
)
COURIER_PRINCIPAL = Principal(PrincipalKind.USER, COURIER, PrincipalRole.COURIER, CARRIER)


def _challenged(engine: Engine) -> str:
    """An entry bound to the courier's phone key, whose hub has answered with its
    challenge: the phone's proof comes next. Returns the entry's id."""
    committed(engine, _seed)
    committed(engine, lambda tx: tx.run(
        "INSERT INTO device_keys (id, user_id, point, label, created_at)"
        " VALUES ('dk-phone', ?, ?, '', ?)", (COURIER, PHONE, tx.time(NOW))))  # fmt: skip
    with_key = replace(AT_THE_DOOR, device_key_id="dk-phone")
    decision = committed(engine, lambda tx: access.decide(
        tx, token=TOKEN, request=with_key, now=NOW, settings=SETTINGS, signer=GrantSigner(KEY),
    ))  # fmt: skip
    assert decision.command is not None and decision.command.kind == "challenge"
    reply = Reply(command_id=decision.command.command_id, result="ok", challenge="Y2hhbGxlbmdl")
    committed(engine, lambda tx: access.apply_reply(tx, hub_id=HUB, reply=reply, now=NOW))
    return decision.entry.id


def _proves(entry_id: str) -> Job:
    """The phone's proof, a few seconds after the challenge."""
    return lambda tx: access.unlock_with_proof(
        tx, courier=COURIER_PRINCIPAL, entry_id=entry_id, proof="cHJvb2Y",
        now=NOW + timedelta(seconds=5), settings=SETTINGS,
    )  # fmt: skip


def _suspended(tx: Tx) -> None:
    tx.run("UPDATE users SET active = ? WHERE id = ?", (False, COURIER))


def _cancelled(tx: Tx) -> None:
    tx.run("UPDATE deliveries SET status = 'cancelled' WHERE id = ?", (DELIVERY,))


def _reassigned(tx: Tx) -> None:
    tx.run("UPDATE deliveries SET courier_id = ? WHERE id = ?", (OWNER, DELIVERY))


def test_a_proof_in_time_sends_the_unlock(migrated_engine: Engine) -> None:
    entry_id = _challenged(migrated_engine)

    answer = committed(migrated_engine, _proves(entry_id))

    assert answer.command is not None and answer.command.kind == "unlock"
    assert answer.command.proof == "cHJvb2Y"


@pytest.mark.parametrize(
    ("meanwhile", "reason"),
    [
        (_suspended, "courier_inactive"),
        (_cancelled, "package_already_delivered"),
        (_reassigned, "courier_not_assigned"),
    ],
)
def test_a_proof_after_the_entry_lost_its_grounds_is_denied_on_record(
    migrated_engine: Engine, meanwhile: Job, reason: str
) -> None:
    """Between the hub's challenge and the phone's proof the courier is suspended, the
    delivery cancelled or given to another courier: the service checks again, as a
    decision would, and sends no unlock."""
    entry_id = _challenged(migrated_engine)
    committed(migrated_engine, meanwhile)

    answer = committed(migrated_engine, _proves(entry_id))

    assert answer.command is None
    assert (answer.entry.state, answer.entry.reason) == ("denied", reason)
    assert answer.entry.to_sign is None
    action, data = _audited(migrated_engine, entry_id)[-1]
    assert (action, data["reason"]) == ("entry:denied", reason)
    assert committed(migrated_engine, lambda tx: tx.one(
        "SELECT grant_token, challenge FROM entries WHERE id = ?", (entry_id,)
    )) == (None, None)  # fmt: skip
