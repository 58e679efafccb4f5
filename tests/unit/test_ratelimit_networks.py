"""The guess limiter keyed by client address: one subscriber's IPv6 allocation (a /64,
whose addresses its owner picks freely) is one client, so cycling through it buys no
more guesses; an IPv4 client seen on a dual-stack socket (`::ffff:a.b.c.d`) is its IPv4
address, and is not lumped with every other IPv4 client. On SQLite, then PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from doorstep import db
from doorstep.ratelimit import Limiter


@pytest.fixture
def limiter_of(migrated_engine: Engine) -> Callable[..., Limiter]:
    sessions = db.make_session_factory(migrated_engine)
    secret = secrets.token_bytes(32)

    def make(*, limit: int, window_seconds: float) -> Limiter:
        return Limiter(
            sessions, name="test", secret=secret, limit=limit, window_seconds=window_seconds
        )

    return make


def test_addresses_of_one_ipv6_slash_64_share_one_limit(
    limiter_of: Callable[..., Limiter],
) -> None:
    limiter = limiter_of(limit=3, window_seconds=60)
    assert limiter.allow("2001:db8:1:2::1", 0)
    assert limiter.allow("2001:db8:1:2::2", 1)
    assert limiter.allow("2001:db8:1:2:ffff:ffff:ffff:ffff", 2)
    assert not limiter.allow("2001:db8:1:2:abcd::9", 3)
    assert limiter.allow("2001:db8:1:3::1", 4)  # the next /64 is someone else
    assert limiter.allow("2001:db8:1:2::1", 61)  # the window still slides


def test_a_prefixed_address_key_is_counted_the_same_way(
    limiter_of: Callable[..., Limiter],
) -> None:
    limiter = limiter_of(limit=1, window_seconds=60)
    assert limiter.allow("invite:2001:db8::1", 0)
    assert not limiter.allow("invite:2001:db8::2", 1)
    assert limiter.allow("2001:db8::3", 2)  # another purpose, another count


def test_ipv4_clients_stay_apart_and_a_mapped_one_is_its_ipv4_address(
    limiter_of: Callable[..., Limiter],
) -> None:
    limiter = limiter_of(limit=1, window_seconds=60)
    assert limiter.allow("192.0.2.1", 0)
    assert limiter.allow("::ffff:192.0.2.2", 1)
    assert limiter.allow("192.0.2.3", 2)
    assert not limiter.allow("::ffff:192.0.2.1", 3)
    assert not limiter.allow("192.0.2.2", 4)
    assert limiter.allow("reauth:usr_abc", 5)  # other keys are counted as they are
    assert not limiter.allow("reauth:usr_abc", 6)


def test_clients_whose_attempts_left_the_window_are_forgotten(
    limiter_of: Callable[..., Limiter], migrated_engine: Engine
) -> None:
    limiter = limiter_of(limit=3, window_seconds=60)
    for n in range(1000):  # a thousand clients, one attempt each
        assert limiter.allow(f"203.0.113.{n % 250}:{n}", 0.0)
    assert _held(migrated_engine) == 1000
    assert limiter.allow("198.51.100.7", 61.0)  # a window later: only the newcomer is held
    assert _held(migrated_engine) == 1


def _held(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM guess_hits")).scalar_one())
