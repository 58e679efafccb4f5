"""The hub journal: boot epochs, sequence numbers, a signed hash chain, acks, used tokens."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from itertools import pairwise
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub.journal import Journal
from doorstep.protocol.messages import GENESIS_HASH, Event, Reply, b64decode, canonical

HUB_ID = "hub-0123456789abcdef"
T = 1_800_000_000.0

OpenJournal = Callable[[], Journal]


@pytest.fixture
def hub_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def open_journal(tmp_path: Path, hub_key: Ed25519PrivateKey) -> Iterator[OpenJournal]:
    """Open the same journal file again and again, as successive boots of one hub do."""
    opened: list[Journal] = []

    def reopen() -> Journal:
        if opened:
            opened[-1].close()
        opened.append(Journal(tmp_path / "journal.sqlite3", hub_id=HUB_ID, signing_key=hub_key))
        return opened[-1]

    yield reopen
    opened[-1].close()


def _append(journal: Journal, count: int) -> list[Event]:
    return [journal.append("test.event", {"n": n}, T + n) for n in range(count)]


def test_epoch_increments_on_every_open(open_journal: OpenJournal) -> None:
    assert [open_journal().epoch for _ in range(3)] == [1, 2, 3]


def test_seq_restarts_at_one_in_each_epoch(open_journal: OpenJournal) -> None:
    first = _append(open_journal(), 3)
    second = _append(open_journal(), 2)

    assert [(event.epoch, event.seq) for event in first + second] == [
        (1, 1), (1, 2), (1, 3), (2, 1), (2, 2),
    ]  # fmt: skip


def test_event_fields(open_journal: OpenJournal) -> None:
    event = open_journal().append("lock.unlocked", {"access_point": "front"}, T)

    assert (event.hub, event.kind, event.ts) == (HUB_ID, "lock.unlocked", T)
    assert event.data == {"access_point": "front"}
    assert event.prev_hash == GENESIS_HASH


def test_prev_hash_chains_across_events_and_epochs(open_journal: OpenJournal) -> None:
    events = _append(open_journal(), 3) + _append(open_journal(), 2)

    assert events[0].prev_hash == GENESIS_HASH
    for previous, event in pairwise(events):
        assert event.prev_hash == previous.chain_hash()
        assert event.prev_hash == hashlib.sha256(canonical(previous.model_dump())).hexdigest()


def test_stored_events_are_the_published_ones(open_journal: OpenJournal) -> None:
    journal = open_journal()
    events = _append(journal, 3)

    assert journal.unacknowledged() == events
    assert journal.unacknowledged(after=(1, 1)) == events[1:]


def test_signatures_verify_with_the_hub_public_key(
    open_journal: OpenJournal, hub_key: Ed25519PrivateKey
) -> None:
    events = _append(open_journal(), 2) + _append(open_journal(), 1)
    public_key = hub_key.public_key()

    for event in events:
        public_key.verify(b64decode(event.sig), event.signing_bytes())


def test_a_changed_event_no_longer_verifies(
    open_journal: OpenJournal, hub_key: Ed25519PrivateKey
) -> None:
    [event] = _append(open_journal(), 1)
    changed = event.model_copy(update={"data": {"n": 1}})

    with pytest.raises(InvalidSignature):
        hub_key.public_key().verify(b64decode(changed.sig), changed.signing_bytes())


def test_acknowledge_drops_only_that_epochs_events_up_to_n(open_journal: OpenJournal) -> None:
    _append(open_journal(), 3)
    journal = open_journal()
    _append(journal, 3)

    assert journal.acknowledge(1, 2) == 2
    assert [(e.epoch, e.seq) for e in journal.unacknowledged()] == [(1, 3), (2, 1), (2, 2), (2, 3)]
    assert journal.acknowledge(2, 1) == 1
    assert journal.acknowledge(2, 1) == 0  # acks are idempotent
    assert [(e.epoch, e.seq) for e in journal.unacknowledged()] == [(1, 3), (2, 2), (2, 3)]
    assert journal.pending_count() == 3


def test_unacknowledged_events_survive_a_restart(open_journal: OpenJournal) -> None:
    events = _append(open_journal(), 2)

    assert open_journal().unacknowledged() == events


def test_use_token_once(open_journal: OpenJournal) -> None:
    journal = open_journal()
    token_id = bytes(range(16))

    assert journal.use_token(token_id, expires=int(T) + 600, now=T)
    assert not journal.use_token(token_id, expires=int(T) + 600, now=T + 1)
    assert journal.use_token(bytes(16), expires=int(T) + 600, now=T)


def test_used_token_is_remembered_across_a_restart(open_journal: OpenJournal) -> None:
    token_id = bytes(range(16))
    assert open_journal().use_token(token_id, expires=int(T) + 600, now=T)

    assert not open_journal().use_token(token_id, expires=int(T) + 600, now=T)


def test_forgetting_expired_tokens_keeps_live_ones(open_journal: OpenJournal) -> None:
    journal = open_journal()
    old, live = b"o" * 16, b"l" * 16
    journal.use_token(old, expires=int(T) - 1, now=T - 600)
    journal.use_token(live, expires=int(T) + 600, now=T)

    journal.forget_tokens_expired_before(int(T))

    assert not journal.token_used(old)
    assert journal.token_used(live)
    assert not journal.use_token(live, expires=int(T) + 600, now=T)


def test_a_forgotten_token_is_never_accepted_again_even_across_a_restart(
    open_journal: OpenJournal,
) -> None:
    # Forgotten by a clock that ran a day ahead: in real time its grant is alive.
    journal = open_journal()
    forgotten = b"f" * 16
    journal.use_token(forgotten, expires=int(T) + 600, now=T)
    journal.forget_tokens_expired_before(int(T) + 86_400 - 3600)
    assert not journal.token_used(forgotten)

    journal = open_journal()
    assert journal.forgotten_through() == int(T) + 600
    assert not journal.use_token(forgotten, expires=int(T) + 600, now=T + 10)
    assert not journal.use_token(b"n" * 16, expires=int(T) + 600, now=T + 10)  # as early
    assert journal.use_token(b"n" * 16, expires=int(T) + 601, now=T + 10)


def test_forgetting_ended_entries_moves_the_horizon_to_their_latest_until(
    open_journal: OpenJournal,
) -> None:
    journal = open_journal()
    journal.end_entry("ent-1", until=int(T) + 7200)
    journal.forget_ended_entries_before(int(T))  # nothing to forget yet
    assert journal.forgotten_through() == 0

    journal.forget_ended_entries_before(int(T) + 86_400)
    journal.forget_tokens_expired_before(int(T) + 86_400)  # nothing: the horizon stays

    assert not open_journal().entry_ended("ent-1", now=T)
    assert open_journal().forgotten_through() == int(T) + 7200


def test_an_ended_entry_is_remembered_across_a_restart_until_forgotten(
    open_journal: OpenJournal,
) -> None:
    open_journal().end_entry("ent-1", until=int(T) + 600)

    journal = open_journal()
    assert journal.entry_ended("ent-1", now=T)
    assert not journal.entry_ended("ent-2", now=T)
    assert not journal.entry_ended("ent-1", now=T + 601)  # past its time
    journal.end_entry("ent-1", until=int(T) + 10)  # never shortened
    journal.forget_ended_entries_before(int(T) + 600)
    assert journal.entry_ended("ent-1", now=T)
    journal.forget_ended_entries_before(int(T) + 601)
    assert not journal.entry_ended("ent-1", now=T)


def test_command_replies_are_remembered_across_a_restart(open_journal: OpenJournal) -> None:
    open_journal().record_command("cmd-00000001", b'{"result": "ok"}', T)

    journal = open_journal()
    assert journal.command_reply("cmd-00000001") == b'{"result": "ok"}'
    assert journal.command_reply("cmd-00000002") is None


def test_opening_a_journal_changes_nothing_but_its_epoch(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    # Opening compiles the statements a command uses by running them in a transaction
    # that is rolled back: none of those writes may stay.
    journal = open_journal()
    _append(journal, 2)
    journal.use_token(bytes(16), expires=int(T) + 600, now=T)
    journal.record_command("cmd-00000001", b'{"result": "ok"}', T)
    journal.save_visit("front-door", "ent-1", "cmd-00000001", replied=True, opened=False)
    journal.raise_lock_event_mark("matter/7/2023-03-07T09:06:06", 12)
    before = _rows(tmp_path / "journal.sqlite3")

    assert open_journal().epoch == 2
    after = _rows(tmp_path / "journal.sqlite3")

    assert after.pop("epoch") == [("epoch", "2")]
    assert before.pop("epoch") == [("epoch", "1")]
    assert after == before


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(path)) as db:
        rows = {
            table: sorted(db.execute(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
            for table in ("events", "used_tokens", "commands", "visits", "lock_event_marks")
        }
        meta = sorted(db.execute("SELECT key, value FROM meta"))
    rows["epoch"] = [row for row in meta if row[0] == "epoch"]
    rows["meta"] = [row for row in meta if row[0] != "epoch"]
    return rows


def test_a_lock_event_mark_only_rises_and_outlives_a_restart(open_journal: OpenJournal) -> None:
    journal = open_journal()
    assert journal.lock_event_mark("matter/7/2023-03-07T09:06:06") is None

    journal.raise_lock_event_mark("matter/7/2023-03-07T09:06:06", 12)
    journal.raise_lock_event_mark("matter/7/2023-03-07T09:06:06", 5)  # late: 12 stays
    journal.raise_lock_event_mark("matter/7/2026-11-20T08:00:00", 3)  # commissioned again

    journal = open_journal()
    assert journal.lock_event_mark("matter/7/2023-03-07T09:06:06") == 12
    assert journal.lock_event_mark("matter/7/2026-11-20T08:00:00") == 3


def test_a_token_spent_with_its_visit_keeps_both_and_a_replay_neither(
    open_journal: OpenJournal,
) -> None:
    token_id = bytes(range(16))
    assert open_journal().use_token(
        token_id, expires=int(T) + 600, now=T, visit=("front-door", "ent-1", "cmd-1")
    )

    journal = open_journal()  # both were written, in one transaction
    assert journal.visits() == [("front-door", "ent-1", "cmd-1", False, False, None)]
    assert not journal.use_token(
        token_id, expires=int(T) + 600, now=T, visit=("back-door", "ent-2", "cmd-2")
    )
    assert open_journal().visits() == [("front-door", "ent-1", "cmd-1", False, False, None)]


def test_a_visit_keeps_when_its_door_opened_across_a_restart(
    open_journal: OpenJournal,
) -> None:
    open_journal().save_visit("front-door", "ent-1", "cmd-1", True, True, opened_at=T + 0.5)

    assert open_journal().visits() == [("front-door", "ent-1", "cmd-1", True, True, T + 0.5)]


def test_a_journal_from_before_opening_times_opens_and_keeps_its_visits(
    tmp_path: Path, open_journal: OpenJournal
) -> None:
    with closing(sqlite3.connect(tmp_path / "journal.sqlite3")) as db, db:
        db.execute(
            "CREATE TABLE visits (access_point TEXT PRIMARY KEY, entry_id TEXT NOT NULL,"
            " command_id TEXT NOT NULL, replied INTEGER NOT NULL, opened INTEGER NOT NULL)"
        )
        db.execute("INSERT INTO visits VALUES ('front-door', 'ent-1', 'cmd-1', 1, 1)")

    journal = open_journal()
    assert journal.visits() == [("front-door", "ent-1", "cmd-1", True, True, None)]
    journal.save_visit("front-door", "ent-1", "cmd-1", True, True, opened_at=T)
    assert open_journal().visits() == [("front-door", "ent-1", "cmd-1", True, True, T)]


def test_a_journal_holding_the_rehearsals_keys_still_opens(open_journal: OpenJournal) -> None:
    # The statements compiled at opening run with made-up keys (an empty token id); a
    # journal that holds such a row (a revoked token id can be any bytes) still opens.
    assert open_journal().use_token(b"", expires=int(T) + 600, now=T)

    journal = open_journal()
    assert journal.epoch == 2
    assert not journal.use_token(b"", expires=int(T) + 600, now=T)


def test_an_event_and_the_reply_naming_it_are_written_together(open_journal: OpenJournal) -> None:
    journal = open_journal()
    _append(journal, 1)
    asked = Reply(command_id="cmd-00000001", result="ok")

    event, reply, body = journal.append_answering("lock.unlocked", {"n": 1}, T, asked)

    assert (event.seq, reply.seqs, Reply.model_validate_json(body)) == (2, [2], reply)
    reopened = open_journal()
    assert reopened.unacknowledged()[-1] == event
    assert reopened.command_reply("cmd-00000001") == body
    # the next event chains on from it
    assert _append(reopened, 1)[0].prev_hash == event.chain_hash()


def test_a_failed_write_leaves_the_journal_usable_and_its_sequence_unbroken(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    journal = open_journal()
    first = _append(journal, 1)[0]
    # The storage refuses the next event (a full disk, as far as the journal can tell).
    with closing(sqlite3.connect(tmp_path / "journal.sqlite3")) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events"
            " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        db.commit()
    with pytest.raises(sqlite3.Error):
        journal.append("test.event", {"n": 1}, T + 1)
    with pytest.raises(sqlite3.Error):
        journal.append_answering(
            "test.event", {"n": 1}, T + 1, Reply(command_id="cmd-1", result="ok")
        )
    assert journal.command_reply("cmd-1") is None
    with closing(sqlite3.connect(tmp_path / "journal.sqlite3")) as db:
        db.execute("DROP TRIGGER refuse")
        db.commit()

    second = journal.append("test.event", {"n": 2}, T + 2)

    assert (second.seq, second.prev_hash) == (2, first.chain_hash())
    assert journal.use_token(bytes(16), expires=int(T) + 600, now=T)
