"""A resident's reads do not wait for the writers: every API GET runs in a read-only
transaction (`deps.get_session`). On SQLite it is answered while the writers' turn is
held (a long batch of entry decisions), where a write waits for the turn and, past the
busy timeout, is refused with a 503 that changed nothing; on PostgreSQL it is answered
while a writer holds the row it reads. The async routes' own short reads (the live
stream's check, the courier's and the visitor's follow) are read-only too: on SQLite a
turn taken there would be waited for on the event loop, holding up every request. So
would a sign-in's password check, which runs in a worker thread."""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from doorstep import db, demo
from doorstep.accounts import service as accounts_service
from doorstep.demo import PASSWORD


@contextmanager
def _writer_busy(live: Any, home_id: str) -> Iterator[None]:
    """A writer in the middle of its work, for as long as the block runs."""
    with live.sessions() as session:
        engine = session.get_bind().engine
        path = db.batch_lock_path(engine)
        if path is None:  # PostgreSQL: a transaction holding the home's row
            session.execute(text("SELECT id FROM homes WHERE id = :id FOR UPDATE"),
                            {"id": home_id})  # fmt: skip
            yield
            session.rollback()
            return
    holder = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a writers' batch, open as long as we like
        yield
    finally:
        os.close(holder)  # the turn ends with the lock's file


def test_a_get_is_answered_while_a_writer_is_busy(
    live: Any, world: demo.World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = world.homes[0]
    monkeypatch.setattr(db, "BUSY_SECONDS", 2.0)  # how long a write waits for the turn
    preferences = home.resident.call("GET", f"/v1/homes/{home.id}/preferences")
    changed = {**preferences, "pet_notes": "the cat hides under the stairs"}
    with _writer_busy(live, home.id):
        for _ in range(3):
            assert home.resident.call("GET", f"/v1/homes/{home.id}/preferences") == preferences
            assert home.resident.call("GET", f"/v1/homes/{home.id}")["id"] == home.id
        if database_url.startswith("sqlite"):
            # A write does wait for the turn. Past the busy timeout it is refused with
            # a clear 503, changing nothing, and may be sent again.
            refused = home.resident.http.put(f"/v1/homes/{home.id}/preferences", json=changed)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "unavailable"
            assert "nothing was changed" in refused.json()["error"]["message"]
            assert home.resident.call("GET", f"/v1/homes/{home.id}/preferences") == preferences
    assert home.resident.call("PUT", f"/v1/homes/{home.id}/preferences", json=changed) == changed
    assert home.resident.call("GET", f"/v1/homes/{home.id}/preferences") == changed


def test_the_live_stream_opens_while_a_writer_is_busy(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = world.homes[0]
    monkeypatch.setattr(db, "BUSY_SECONDS", 2.0)
    with (
        _writer_busy(live, home.id),
        home.resident.http.stream("GET", f"/v1/homes/{home.id}/events", timeout=5) as response,
    ):
        assert response.status_code == 200
        assert next(response.iter_lines()) == "retry: 2000"


def test_a_sign_in_does_not_hold_up_other_requests(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password check (argon2, deliberately slow) runs off the event loop: while a
    sign-in is still checking, the service goes on answering."""
    checking, release = threading.Event(), threading.Event()
    real = accounts_service.authenticate_password

    def slow_check(*args: Any, **kwargs: Any) -> Any:
        checking.set()
        release.wait(10)  # bounded: the test releases it as soon as it has its answer
        return real(*args, **kwargs)

    monkeypatch.setattr(accounts_service, "authenticate_password", slow_check)
    form = {"grant_type": "password", "username": "casey@parcelly.test", "password": PASSWORD}
    with (
        httpx.Client(base_url=live.url, timeout=30) as http,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        signing_in = pool.submit(http.post, "/v1/auth/token", data=form)
        try:
            assert checking.wait(10)
            health = httpx.get(f"{live.url}/healthz", timeout=2)
            assert health.status_code == 200
            assert not signing_in.done()  # answered while the sign-in was still checking
        finally:
            release.set()
        assert signing_in.result(10).status_code == 200
