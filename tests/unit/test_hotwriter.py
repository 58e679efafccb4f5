"""The hot paths' writer process's own loop (`hotwriter._Child`), on a real SQLite database:
what crosses back to the service, and a request cancelled before it ran."""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from doorstep import db
from doorstep.access import keys as issuer_keys
from doorstep.access.service import EntryRequest
from doorstep.errors import NotAuthenticated
from doorstep.hotwriter import _Child
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


def test_a_request_cancelled_before_it_ran_is_neither_run_nor_answered(rig: Any) -> None:
    child, ours, writer, settings, signer = rig
    now = datetime.now(UTC)
    child._run(
        [("decide", 1, "not-a-token", REQUEST, now, None), ("cancel", 1)], writer, settings, signer
    )
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
