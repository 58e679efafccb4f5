"""The hot paths' writer process's own loop (`hotwriter._Child`), on a real SQLite database:
what crosses back to the service, and a request cancelled before it ran; and what the
service does with answers that come back to nobody."""

from __future__ import annotations

import asyncio
import pickle
import socket
import sqlite3
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from doorstep import db
from doorstep.access import keys as issuer_keys
from doorstep.access.service import EntryRequest
from doorstep.errors import NotAuthenticated
from doorstep.hotwriter import HotWriter, _answer, _Child
from doorstep.protocol.codes import Reason
from doorstep.settings import Settings
from doorstep.sql import Writer

REQUEST = EntryRequest("del-1", "PKG-1", 52.52, 13.405, 8.0)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[_Child, socket.socket, Writer, Settings, Any]]:
    settings = Settings(data_dir=tmp_path)
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    signer = issuer_keys.load_or_create(tmp_path / "keys").signer
    ours, theirs = socket.socketpair()
    writer = Writer(engine)
    yield _Child(theirs), ours, writer, settings, signer
    writer.close_batches()
    engine.dispose()
    ours.close()
    theirs.close()


def _answers(connection: socket.socket) -> list[Any]:
    connection.settimeout(5)
    (length,) = struct.unpack(">I", connection.recv(4))
    body = b""
    while len(body) < length:
        body += connection.recv(length - len(body))
    answers: list[Any] = pickle.loads(body)  # noqa: S301 - written by the code under test
    return answers


def test_an_error_crosses_back_as_the_same_exception(rig: Any) -> None:
    child, ours, writer, settings, signer = rig
    now = datetime.now(UTC)
    child._run([("decide", 7, "not-a-token", REQUEST, now, None)], writer, settings, signer)
    [(kind, request_id, error)] = _answers(ours)
    assert (kind, request_id) == ("failed", 7)
    assert isinstance(error, NotAuthenticated)
    assert error.message == "token is unknown or expired"


def test_a_request_cancelled_before_it_ran_is_not_run_and_said_to_be_dropped(rig: Any) -> None:
    # Not run: its answer would have been `failed` (the token is no token). Said to be
    # dropped, so that the service forgets the entry it would otherwise end if committed.
    child, ours, writer, settings, signer = rig
    now = datetime.now(UTC)
    child._run(
        [("decide", 1, "not-a-token", REQUEST, now, None), ("cancel", 1)], writer, settings, signer
    )
    assert _answers(ours) == [("cancelled", 1)]
    ours.setblocking(False)
    with pytest.raises(BlockingIOError):
        ours.recv(1)
    # The next request is answered as usual: nothing of the cancelled one comes with it.
    child._run([("decide", 2, "not-a-token", REQUEST, now, None)], writer, settings, signer)
    assert [answer[:2] for answer in _answers(ours)] == [("failed", 2)]


def test_answers_come_back_in_the_order_the_work_came(rig: Any) -> None:
    child, ours, writer, settings, signer = rig
    now = datetime.now(UTC)
    child._run(
        [
            ("decide", 1, "not-a-token", REQUEST, now, None),
            ("ingest", 2, "hub-unknown", "events", b"{}", now),
            ("decide", 3, "not-a-token", REQUEST, now, None),
        ],
        writer,
        settings,
        signer,
    )
    answers = _answers(ours)
    assert [answer[:2] for answer in answers] == [("failed", 1), ("done", 2), ("failed", 3)]
    assert answers[1][2].ack is None  # a hub the service does not know: nothing follows


def test_an_outcome_that_cannot_be_sent_back_fails_that_job_alone(rig: Any) -> None:
    child, ours, writer, settings, signer = rig
    now = datetime.now(UTC)
    child._run(
        [("job", 1, _holds_a_lock), ("decide", 2, "not-a-token", REQUEST, now, None)],
        writer,
        settings,
        signer,
    )
    answers = _answers(ours) + _answers(ours)
    kinds = {answer[1]: (answer[0], type(answer[2]).__name__) for answer in answers}
    assert kinds == {1: ("failed", "RuntimeError"), 2: ("failed", "NotAuthenticated")}


def _holds_a_lock(_tx: Any) -> Any:
    return threading.Lock()  # cannot be pickled


def test_the_service_ends_an_abandoned_decision_only_if_it_was_committed_with_a_command(
    tmp_path: Path,
) -> None:
    # The service's side (`HotWriter._receive`): answers to decisions whose callers had
    # stopped waiting. Only a committed one with a command to publish holds a door.
    ended: list[tuple[list[str], Reason]] = []
    hot = HotWriter(Settings(data_dir=tmp_path), kid="k1", on_lost=lambda *lost: ended.append(lost))
    authorized = SimpleNamespace(command=object())
    denied = SimpleNamespace(command=None)
    hot._abandoned.update({1: "ent-1", 2: "ent-2", 3: "ent-3", 4: "ent-4"})
    hot._receive(("cancelled", 1))  # dropped before it ran
    hot._receive(("failed", 2, NotAuthenticated("no")))  # rolled back
    hot._receive(("done", 3, denied))  # committed, but nothing to publish
    assert ended == []
    hot._receive(("done", 4, authorized))
    assert ended == [(["ent-4"], Reason.REQUEST_ABANDONED)]
    assert hot._abandoned == {}
    # One still out when the child dies: no answer will come, so it is ended as lost.
    hot._abandoned[5] = "ent-5"
    hot._lost["ent-6"] = Reason.SERVICE_RESTARTED  # a decision in hand as it died
    hot._fail_waiting()
    hot._hand_over_lost()
    assert ended[1:] == [
        (["ent-6"], Reason.SERVICE_RESTARTED),
        (["ent-5"], Reason.REQUEST_ABANDONED),
    ]


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("database is locked"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
    ],
)
def test_a_busy_database_crosses_back_still_recognised_as_busy(error: Exception) -> None:
    # The service answers it with a 503 "try again" (`db.busy`), not a 500.
    failed: Future[Any] = Future()
    failed.set_exception(error)
    kind, _, crossed = pickle.loads(pickle.dumps(_answer(7, failed)))  # noqa: S301
    assert kind == "failed" and type(crossed) is type(error) and db.busy(crossed)


def test_other_database_errors_are_not_taken_for_busy() -> None:
    assert not db.busy(sqlite3.OperationalError("no such table: entries"))
    assert not db.busy(psycopg.errors.UndefinedTable("relation does not exist"))
    assert not db.busy(ValueError("database is locked"))
    wrapped = OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    assert db.busy(wrapped)  # as SQLAlchemy raises it


def test_a_decision_answered_as_its_caller_is_cancelled_is_ended(tmp_path: Path) -> None:
    # The committed answer arrives, and the request is cancelled before it resumes to
    # take it: no other answer will come, so the entry is ended at once.
    ended: list[tuple[list[str], Reason]] = []
    hot = HotWriter(Settings(data_dir=tmp_path), kid="k1", on_lost=lambda *lost: ended.append(lost))
    hot._ready = True  # no child: the test answers in its place

    async def main() -> None:
        task = asyncio.ensure_future(hot.decide(token="t", request=REQUEST, now=datetime.now(UTC)))
        await asyncio.sleep(0)  # the task has asked
        (request_id,) = hot._waiting
        hot._receive(("done", request_id, SimpleNamespace(command=object())))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [(len(ids), reason) for ids, reason in ended] == [(1, Reason.REQUEST_ABANDONED)]
    assert ended[0][0][0].startswith("ent-")
    assert hot._abandoned == {}
