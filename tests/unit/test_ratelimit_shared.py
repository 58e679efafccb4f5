"""The guess limits are counted in the database, not in a process: every `serve` process
on one database shares each count (a guesser behind a load balancer gets the limit, not
the limit times the processes), a restart forgets none, two processes racing for the
last try never both get it, and counts out of their window are deleted. Each process is
played by a limiter on an engine (and so connections) of its own; SQLite, then
PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text

from doorstep import db
from doorstep.ratelimit import Limiter

SECRET = secrets.token_bytes(32)
Process = Callable[..., Limiter]


@pytest.fixture
def process(migrated_engine: Engine) -> Iterator[Process]:
    """`process(limit=..)`: the limiter of a new service process on the test's database."""
    engines: list[Engine] = []

    def start(limit: int = 3, name: str = "sign-in", window_seconds: float = 60) -> Limiter:
        engine = db.make_engine(migrated_engine.url.render_as_string(hide_password=False))
        engines.append(engine)
        sessions = db.make_session_factory(engine)
        return Limiter(
            sessions, name=name, secret=SECRET, limit=limit, window_seconds=window_seconds
        )

    yield start
    for engine in engines:
        engine.dispose()


def _rows(engine: Engine) -> list[tuple[str, int, int]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT key, leaves_at, hits FROM guess_hits"))
        return [(key, leaves_at, hits) for key, leaves_at, hits in rows]


def test_two_processes_share_one_count(process: Process) -> None:
    first, second = process(limit=4), process(limit=4)
    assert first.allow("198.51.100.7", 0)
    assert second.allow("198.51.100.7", 1)
    assert first.allow("198.51.100.7", 2)
    assert second.allow("198.51.100.7", 3)
    assert not first.allow("198.51.100.7", 4)
    assert not second.allow("198.51.100.7", 5)
    assert second.allow("198.51.100.8", 6)  # another client
    assert first.allow("198.51.100.7", 60.5)  # the first attempt has left the window


def test_a_restarted_process_keeps_the_count(process: Process) -> None:
    before = process(limit=2)
    assert before.allow("invite:2001:db8::1", 10)
    assert before.allow("invite:2001:db8::1", 11)
    after = process(limit=2)  # the service restarted: a new process, the same database
    assert not after.allow("invite:2001:db8::2", 12)  # the same /64
    assert after.allow("invite:2001:db8::2", 70.001)


def test_limits_of_other_names_count_apart(process: Process) -> None:
    sign_in, codes = process(limit=1, name="sign-in"), process(limit=1, name="codes")
    assert sign_in.allow("192.0.2.1", 0)
    assert codes.allow("192.0.2.1", 0)  # the same key, another limit
    assert not sign_in.allow("192.0.2.1", 1)
    assert not codes.allow("192.0.2.1", 1)


def test_attempts_in_one_millisecond_each_count(process: Process) -> None:
    limiter = process(limit=3)
    assert [limiter.allow("reauth:usr_abc", 5.0) for _ in range(5)] == [True] * 3 + [False] * 2


def test_racing_processes_never_get_more_than_the_limit(process: Process) -> None:
    limit, racers = 5, 16
    limiters = [process(limit=limit) for _ in range(racers)]
    start = threading.Barrier(racers)
    answers: list[bool] = []
    errors: list[BaseException] = []

    def race(limiter: Limiter) -> None:
        try:
            start.wait(timeout=30)
            answers.append(limiter.allow("203.0.113.50", 100.0))
        except BaseException as error:  # reported below, with the answers
            errors.append(error)

    threads = [threading.Thread(target=race, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(answers) == [False] * (racers - limit) + [True] * limit


def test_counts_out_of_their_window_are_deleted(process: Process, migrated_engine: Engine) -> None:
    first, second = process(limit=3), process(limit=3, name="codes", window_seconds=30)
    for n in range(40):  # forty clients, one attempt each
        assert first.allow(f"203.0.113.{n}", 0.0)
    assert second.allow("203.0.113.1", 0.0)
    assert len(_rows(migrated_engine)) == 41
    assert first.allow("198.51.100.7", 59.0)  # within the window: nothing is out yet
    assert len(_rows(migrated_engine)) == 42

    assert second.allow("198.51.100.7", 61.0)  # any process's limiter sweeps every limit's
    assert len(_rows(migrated_engine)) == 2  # what is still in a window


def test_the_stored_key_is_a_keyed_hash_of_the_client(
    process: Process, migrated_engine: Engine
) -> None:
    """Keys name client addresses: a plain hash of an IPv4 address is undone by hashing
    every address, so the table holds an HMAC under a key of the data dir's."""
    assert process().allow("signup:203.0.113.9", 0.0)
    [(key, _leaves_at, hits)] = _rows(migrated_engine)
    assert hits == 1
    assert re.fullmatch("[0-9a-f]{64}", key)
    plain = ("203.0.113.9", "signup:203.0.113.9", "sign-in\nsignup:203.0.113.9")
    assert key not in {hashlib.sha256(value.encode()).hexdigest() for value in plain}
