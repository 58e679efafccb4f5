"""A hub whose disk is full fails closed, loses nothing it had, and recovers with room.

The full disk is SQLite's own: `PRAGMA max_page_count` on the journal's connection (a
per-connection setting, so it is set on the journal's own, `Journal._db`) stops its file
from growing, and a write that needs a new page fails with SQLITE_FULL ("database or
disk is full"), as on a full disk. `_fill_up` then writes rows like the hub's own until
the tables an unlock and its refusal write (spent tokens, events) have no room left.
The lock's counters are the ground truth that the bolt never moved.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from doorstep.hub.journal import Journal, JournalError
from doorstep.hub.lock import LockState
from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import new_token_id
from doorstep.protocol.messages import Event, EventKind

if TYPE_CHECKING:
    from conftest import Hub

# The greatest token id: an unlock's spent token lands at the end of the table, where
# `_fill_up` left no room (real ids are time-ordered: they land there too).
LAST_TOKEN = b"\xff" * 16


def _connection(journal: Journal) -> sqlite3.Connection:
    return journal._db  # the journal's own connection: the page limit is per connection


def _fill_up(hub: Hub) -> Callable[[], None]:
    """The disk fills up under the hub's journal; returns what makes room again."""
    journal = hub.journal
    db = _connection(journal)
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(JournalError):
        for _ in range(100_000):
            journal.append(EventKind.HUB_STARTED, {}, hub.now)
    with pytest.raises(JournalError):
        for _ in range(100_000):
            journal.use_token(new_token_id(), expires=hub.now + 600, now=hub.now)
    return lambda: db.execute("PRAGMA max_page_count = 1073741823")


def _seqs(events: list[Event]) -> list[tuple[int, int]]:
    return [(event.epoch, event.seq) for event in events]


def test_an_unlock_the_journal_cannot_record_is_refused_and_the_bolt_never_moves(
    hub: Hub,
) -> None:
    hub.agent.record(EventKind.HUB_STARTED, {"epoch": hub.journal.epoch})
    make_room = _fill_up(hub)
    before = _seqs(hub.events())

    command = hub.command(hub.grant(token_id=LAST_TOKEN))
    reply = hub.send(command)

    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", Reason.HUB_STORAGE_FAILED)
    assert hub.lock.unlock_calls == 0
    assert hub.lock.actuations == 0
    assert hub.lock.status().lock_state == LockState.LOCKED
    assert _seqs(hub.events()) == before  # nothing journalled before is lost
    # Redelivered while the disk is still full: the same answer, nothing moves.
    assert hub.send(command) == reply
    assert hub.lock.unlock_calls == 0

    make_room()
    assert hub.send(command) == reply  # answered, not carried out, once there is room
    assert hub.lock.unlock_calls == 0
    hub.agent._journal_held()  # what the resend loop does every round
    [refusal] = hub.events(EventKind.COMMAND_REFUSED)
    assert refusal.data["command_id"] == command.command_id
    assert refusal.data["reason"] == Reason.HUB_STORAGE_FAILED
    assert hub.stored_reply(command.command_id) == reply
    assert _seqs(hub.events())[: len(before)] == before

    # The hub works again: a new grant opens the door.
    again = hub.command(hub.grant(token_id=new_token_id()))
    assert hub.send(again) is None  # the reply follows the lock's report
    stored = hub.stored_reply(again.command_id)
    assert stored is not None and stored.result == "ok"
    assert hub.lock.unlock_calls == 1


def test_an_unlock_whose_refusal_finds_room_is_refused_on_record(hub: Hub) -> None:
    # Only the spent tokens have no room left: the refusal's event and reply fit.
    db = _connection(hub.journal)
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(JournalError):
        for _ in range(100_000):
            hub.journal.use_token(new_token_id(), expires=hub.now + 600, now=hub.now)

    command = hub.command(hub.grant(token_id=LAST_TOKEN))
    reply = hub.send(command)

    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", Reason.HUB_STORAGE_FAILED)
    assert hub.lock.unlock_calls == 0
    assert hub.stored_reply(command.command_id) == reply
    [refusal] = hub.events(EventKind.COMMAND_REFUSED)
    assert reply.seqs == [refusal.seq]


def test_what_the_lock_reports_while_the_journal_is_full_is_acted_on_and_journalled_later(
    hub: Hub,
) -> None:
    command = hub.command(hub.grant())
    hub.send(command)
    assert hub.lock.status().lock_state == LockState.UNLOCKED
    make_room = _fill_up(hub)
    before = _seqs(hub.events())

    hub.lock.open_door()
    hub.lock.close_door()

    # The entry went on: the hub relocked the shut door.
    assert hub.lock.lock_calls == 1
    assert hub.lock.status().secure
    assert _seqs(hub.events()) == before

    hub.agent._journal_held()  # still full: they go on waiting
    assert _seqs(hub.events()) == before
    make_room()
    hub.agent._journal_held()
    kinds = [event.kind for event in hub.events()[len(before) :]]
    assert kinds == [
        EventKind.DOOR_OPENED,
        EventKind.DOOR_CLOSED,
        EventKind.LOCK_LOCKED,
        EventKind.ENTRY_SECURED,
    ]
    assert all(event.data["entry_id"] == hub.entry_id for event in hub.events()[len(before) :])
