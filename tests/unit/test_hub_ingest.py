"""Hub events as the service's link stores them (`hublink.link.Ingestor`, one writer job
per message), on SQLite and PostgreSQL: an event is stored and acknowledged whatever its
effects do; a keypad unlock beside another open entry; alerts flagged once per entry,
with `relock_failed` kept; another hub's events never reach an entry's timeline."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from doorstep import db
from doorstep.access import service as access
from doorstep.access.models import EntryState
from doorstep.audit.service import append_tx
from doorstep.homes.models import Home
from doorstep.hublink.link import Ingestor
from doorstep.hublink.service import RETRY_ATTEMPTS, retry_failed_effects
from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import public_key_bytes
from doorstep.protocol.messages import GENESIS_HASH, Alert, Event, EventKind, b64encode
from doorstep.sql import Tx, Writer
from doorstep.web.timeline import timeline

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OWNER, COURIER, GRANT = "usr-owner", "usr-courier", "grt-keypad"


class Hub:
    """One home's hub: signs its events and has them stored as the link would."""

    def __init__(self, writer: Writer, ingestor: Ingestor, name: str) -> None:
        self.writer, self.ingestor = writer, ingestor
        self.id, self.home, self.door = f"hub-{name}", f"home-{name}", f"ap-{name}"
        self.key = Ed25519PrivateKey.generate()

    def send(self, epoch: int, seq: int, kind: str, **data: Any) -> Any:
        """Store one event; returns the link's outcome (its ack, any replay asked for)."""
        event = Event(hub=self.id, epoch=epoch, seq=seq, event_id=str(uuid.uuid4()),
                      ts=NOW.timestamp(), kind=kind, data=data, prev_hash=GENESIS_HASH)  # fmt: skip
        signed = event.model_copy(update={"sig": b64encode(self.key.sign(event.signing_bytes()))})
        payload = signed.model_dump_json().encode()
        return run(self.writer, lambda tx: self.ingestor.store(tx, self.id, "events", payload, NOW))

    def entry(self, entry_id: str, state: str) -> None:
        """A courier's entry at this hub's door, as a decision leaves it."""
        run(self.writer, lambda tx: tx.run(
            "INSERT INTO entries (id, home_id, access_point_id, hub_id, courier_id, state,"
            " created_at, updated_at, purpose, method) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
            " 'delivery', 'app')",
            (entry_id, self.home, self.door, self.id, COURIER, state, tx.time(NOW), tx.time(NOW)),
        ))  # fmt: skip


def run(writer: Writer, job: Any) -> Any:
    return writer.submit(job).result(timeout=10)


def _seed_home(tx: Tx, hub: Hub) -> None:
    at = tx.time(NOW)
    tx.run("INSERT INTO homes (id, owner_id, name, address, latitude, longitude, geofence_m,"
           " timezone, in_home_enabled, created_at, allowed_weekdays, approval_mode,"
           " approval_timeout_seconds, pet_notes, placement_notes) VALUES"
           " (?, ?, 'Home', 'Street 1', 0, 0, 50, 'UTC', ?, ?, 127, 'auto', 120, '', '')",
           (hub.home, OWNER, True, at))  # fmt: skip
    tx.run("INSERT INTO hubs (id, home_id, online, created_at, public_key, claimed_at, epoch)"
           " VALUES (?, ?, ?, ?, ?, ?, 1)",
           (hub.id, hub.home, True, at, public_key_bytes(hub.key.public_key()), at))  # fmt: skip
    tx.run(
        "INSERT INTO access_points (id, home_id, slug, name, kind, created_at, hub_id)"
        " VALUES (?, ?, 'front', 'Front', 'door', ?, ?)",
        (hub.door, hub.home, at, hub.id),
    )


def _seed(tx: Tx, hubs: list[Hub]) -> None:
    at = tx.time(NOW)
    for user, role in ((OWNER, "resident"), (COURIER, "courier")):
        tx.run(
            "INSERT INTO users (id, email, name, password_hash, role, active, created_at)"
            " VALUES (?, ?, ?, 'x', ?, ?, ?)",
            (user, f"{user}@example.org", user, role, True, at),
        )
    for hub in hubs:
        _seed_home(tx, hub)
    tx.run("INSERT INTO access_grants (id, home_id, access_point_id, purpose, method, label,"
           " kind, timezone, windows, require_geofence, notes, created_by, created_at)"
           " VALUES (?, ?, ?, 'guest', 'keypad', 'Cleaner', 'always', 'UTC', '[]', ?, '', ?, ?)",
           (GRANT, hubs[0].home, hubs[0].door, False, OWNER, at))  # fmt: skip


@pytest.fixture
def writer(migrated_engine: Engine) -> Iterator[Writer]:
    writer = Writer(migrated_engine)
    writer.start()
    yield writer
    writer.stop()


@pytest.fixture
def hubs(writer: Writer) -> list[Hub]:
    """Two homes, each with its hub and front door; a keypad code at the first one."""
    ingestor = Ingestor()
    made = [Hub(writer, ingestor, "a"), Hub(writer, ingestor, "b")]
    run(writer, lambda tx: _seed(tx, made))
    return made


@pytest.fixture
def hub(hubs: list[Hub]) -> Hub:
    return hubs[0]


def _data(value: Any) -> Any:
    """A JSON column's value: text from SQLite, decoded already by psycopg."""
    return orjson.loads(value) if isinstance(value, str) else value


def _one(writer: Writer, sql: str, params: tuple[Any, ...] = ()) -> Any:
    return run(writer, lambda tx: tx.one(sql, params))


def _alerts(writer: Writer, entry_id: str) -> list[str]:
    """The alert records of an entry's audit log, oldest first."""
    rows = run(writer, lambda tx: tx.all(
        "SELECT data FROM audit_events WHERE subject = ? AND action = 'entry:alert'"
        " ORDER BY seq", (entry_id,)))  # fmt: skip
    return [_data(data)["alert"] for (data,) in rows]


def _camera_silent(writer: Writer, hub: Hub, now: datetime) -> bool:
    """The link's own finding: ent-1's camera heartbeats stopped."""
    return bool(run(writer, lambda tx: access.camera_silent(
        tx, hub_id=hub.id, entry_id="ent-1", silent_for=3.5, now=now)))  # fmt: skip


def _keypad_visit(hub: Hub, entry_id: str) -> list[Any]:
    """The hub's events for a visit on the keypad code, seq 1 to 5; their acks."""
    door = {"access_point": "front", "entry_id": entry_id}
    return [
        hub.send(1, 1, EventKind.LOCK_UNLOCKED, method="keypad", grant_id=GRANT, **door),
        hub.send(1, 2, EventKind.DOOR_OPENED, **door),
        hub.send(1, 3, EventKind.DOOR_CLOSED, **door),
        hub.send(1, 4, EventKind.LOCK_LOCKED, **door),
        hub.send(1, 5, EventKind.ENTRY_SECURED, opened=True, **door),
    ]


@pytest.mark.parametrize(
    ("waiting", "ended"),
    [(EntryState.AWAITING_APPROVAL, EntryState.DECLINED), (EntryState.AUTHORIZED, "expired")],
)
def test_a_keypad_visit_ends_an_entry_the_hub_never_saw_and_is_recorded_to_the_end(
    writer: Writer, hub: Hub, waiting: str, ended: str
) -> None:
    hub.entry("ent-courier", waiting)

    outcomes = _keypad_visit(hub, "ent-keypad")

    assert [o.ack for o in outcomes] == [(hub.id, 1, seq) for seq in range(1, 6)]
    assert all(o.replay is None for o in outcomes)
    courier = _one(writer, "SELECT state, reason FROM entries WHERE id = 'ent-courier'")
    assert courier == (ended, Reason.ENTRY_IN_PROGRESS)
    keypad = _one(writer, "SELECT state, grant_id FROM entries WHERE id = 'ent-keypad'")
    assert keypad == (EntryState.DONE, GRANT)


def test_a_keypad_unlock_beside_an_entry_the_hub_runs_is_audited_not_doubled(
    writer: Writer, hub: Hub
) -> None:
    hub.entry("ent-courier", EntryState.OPENED)

    outcome = hub.send(1, 1, EventKind.LOCK_UNLOCKED, method="keypad", grant_id=GRANT,
                       access_point="front", entry_id="ent-keypad")  # fmt: skip

    assert outcome.ack == (hub.id, 1, 1)
    assert _one(writer, "SELECT id FROM entries WHERE id = 'ent-keypad'") is None
    assert _one(writer, "SELECT state FROM entries WHERE id = 'ent-courier'") == ("opened",)
    audited = _one(writer, "SELECT data FROM audit_events WHERE subject = 'ent-courier'"
                   " AND action = 'entry:keypad_unlocked'")  # fmt: skip
    assert audited is not None
    assert _data(audited[0])["entry_id"] == "ent-keypad"


def test_an_event_whose_effects_fail_is_still_stored_and_acknowledged(
    writer: Writer, hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(tx: Tx, *, hub_id: str, event: Event, now: datetime) -> None:
        append_tx(tx, at=now, actor="test", action="test:half_done", subject="ent-1")
        tx.one("SELECT nothing FROM no_such_table")  # fails in the database itself

    monkeypatch.setattr(access, "apply_hub_event", broken)
    with caplog.at_level(logging.ERROR, logger="doorstep.hublink.service"):
        first = hub.send(1, 1, EventKind.DOOR_OPENED, access_point="front", entry_id="ent-1")
    second = hub.send(1, 2, EventKind.DOOR_CLOSED, access_point="front", entry_id="ent-1")

    assert (first.ack, second.ack) == ((hub.id, 1, 1), (hub.id, 1, 2))
    assert "applying event 1/1 of hub-a failed" in caplog.text
    stored = run(writer, lambda tx: tx.all("SELECT seq FROM hub_events ORDER BY seq"))
    assert stored == [(1,), (2,)]
    assert _one(writer, "SELECT 1 FROM audit_events WHERE action = 'test:half_done'") is None


def test_effects_that_failed_are_applied_again_and_hold(
    writer: Writer, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.entry("ent-1", EntryState.AUTHORIZED)
    real, calls = access.apply_hub_event, []

    def fails_once(tx: Tx, *, hub_id: str, event: Event, now: datetime) -> None:
        calls.append(event.seq)
        if len(calls) == 1:  # a deadlock the database broke, say
            tx.one("SELECT nothing FROM no_such_table")
        real(tx, hub_id=hub_id, event=event, now=now)

    monkeypatch.setattr(access, "apply_hub_event", fails_once)
    hub.send(1, 1, EventKind.LOCK_UNLOCKED, access_point="front", entry_id="ent-1")
    assert _one(writer, "SELECT state FROM entries WHERE id = 'ent-1'") == ("authorized",)
    failure = _one(writer, "SELECT attempts, error FROM hub_event_failures")
    # What failed, for the operator (the driver's own name for it).
    assert failure[0] == 1 and failure[1].startswith(("OperationalError", "UndefinedTable"))

    early = run(writer, lambda tx: retry_failed_effects(tx, now=NOW + timedelta(seconds=1)))
    held = run(writer, lambda tx: retry_failed_effects(tx, now=NOW + timedelta(seconds=3)))

    assert (early, held) == (0, 1)  # not before its back-off
    assert _one(writer, "SELECT state FROM entries WHERE id = 'ent-1'") == ("unlocked",)
    assert _one(writer, "SELECT 1 FROM hub_event_failures") is None
    assert _one(writer, "SELECT 1 FROM audit_events WHERE action = 'entry:unlocked'")
    # Stamped as of the event's arrival, not of the retry.
    unlocked_at = _one(writer, "SELECT unlocked_at FROM entries WHERE id = 'ent-1'")[0]
    assert str(unlocked_at).startswith("2026-06-01 12:00:00")


def test_effects_that_keep_failing_are_given_up_and_kept(
    writer: Writer, hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(tx: Tx, *, hub_id: str, event: Event, now: datetime) -> None:
        tx.one("SELECT nothing FROM no_such_table")

    monkeypatch.setattr(access, "apply_hub_event", broken)
    hub.send(1, 1, EventKind.DOOR_OPENED, access_point="front", entry_id="ent-1")
    at = NOW
    with caplog.at_level(logging.WARNING, logger="doorstep.hublink.service"):
        for _ in range(RETRY_ATTEMPTS + 2):  # more passes than attempts: no more tries
            at += timedelta(hours=1)
            run(writer, lambda tx, now=at: retry_failed_effects(tx, now=now))
    attempts, next_at = _one(writer, "SELECT attempts, next_at FROM hub_event_failures")
    assert (attempts, next_at) == (RETRY_ATTEMPTS, None)
    assert caplog.text.count("gave up applying event 1/1 of hub-a") == 1
    # Later events are stored, acknowledged and applied all the same.
    monkeypatch.undo()
    assert hub.send(1, 2, EventKind.DOOR_CLOSED, access_point="front").ack == (hub.id, 1, 2)


def test_a_later_alert_never_replaces_relock_failed(writer: Writer, hub: Hub) -> None:
    hub.entry("ent-1", EntryState.CLOSED)
    hub.send(1, 1, EventKind.ENTRY_ALERT, alert=Alert.RELOCK_FAILED, entry_id="ent-1")

    flagged = _camera_silent(writer, hub, NOW)
    hub.send(1, 2, EventKind.ENTRY_ALERT, alert=Alert.DOOR_HELD_OPEN, entry_id="ent-1")

    assert flagged
    loaded = run(writer, lambda tx: access.load_entry(tx, "ent-1"))
    assert loaded.alert == Alert.RELOCK_FAILED  # the courier stays held
    assert _alerts(writer, "ent-1") == ["relock_failed", "camera_lost", "door_held_open"]


def test_an_alert_is_audited_and_notified_once_per_entry(writer: Writer, hub: Hub) -> None:
    hub.entry("ent-1", EntryState.CLOSED)
    hub.send(1, 7, EventKind.ENTRY_ALERT, alert=Alert.RELOCK_FAILED, entry_id="ent-1")
    # The hub restarts mid-entry and its relock watch raises the alert again.
    hub.send(2, 3, EventKind.ENTRY_ALERT, alert=Alert.RELOCK_FAILED, entry_id="ent-1")
    # The service finds the camera silent (twice over), then the hub reports it too.
    later = NOW + timedelta(seconds=5)
    again = [_camera_silent(writer, hub, NOW), _camera_silent(writer, hub, later)]
    hub.send(2, 4, EventKind.ENTRY_ALERT, alert=Alert.CAMERA_LOST, entry_id="ent-1")

    assert again == [True, False]
    assert _alerts(writer, "ent-1") == ["relock_failed", "camera_lost"]
    mails = run(writer, lambda tx: tx.all("SELECT event_id FROM outbox WHERE channel = 'email'"
                                          " ORDER BY created_at"))  # fmt: skip
    assert mails == [("ent-1.alert.relock_failed",), ("ent-1.alert.camera_lost",)]


def test_a_hub_cannot_put_flags_on_another_homes_timeline(
    migrated_engine: Engine, writer: Writer, hubs: list[Hub]
) -> None:
    ours, theirs = hubs
    ours.entry("ent-ours", EntryState.CLOSED)
    theirs.send(1, 1, EventKind.DOOR_FORCED, access_point="front", entry_id="ent-ours")
    ours.send(1, 1, EventKind.LOCK_JAMMED, access_point="front", entry_id="ent-ours")

    with db.make_session_factory(migrated_engine)() as session:
        home = session.get(Home, ours.home)
        assert home is not None
        (line,) = timeline(session, home=home, limit=10)

    assert line.flags == ("Lock jammed",)
