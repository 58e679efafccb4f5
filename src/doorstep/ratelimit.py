"""Limits on guesses (passwords, client secrets, claim, invitation, provider and reset
codes), counted in the database: every `serve` process sharing it shares the counts, and
a restart forgets none of them.

A sliding window per key: `Limiter.allow` counts one attempt and answers False once
`limit` attempts were counted in the last `window_seconds`; a refused attempt is not
counted.

A key that is a client address (alone, or after one `purpose:` prefix) is counted per
network: an IPv6 address by its /64, the block one subscriber gets and may pick any
address from, so cycling through it buys no more tries; an IPv4 address seen on a
dual-stack socket (`::ffff:a.b.c.d`) as that IPv4 address.

Stored in `guess_hits` (migration 0019): per counted key and the millisecond an attempt
leaves its window, how many attempts (one, unless several came in the same millisecond).
The key is stored as an HMAC under `<data dir>/keys/guess-limits.key` (`KEY_FILE`), bound
to the limiter's name: keys name client addresses and accounts, and a plain hash of an
IPv4 address is undone by trying them all. Rows out of their window are deleted by each
process's first count a window after its last sweep.

`allow` blocks on the database: call it off the event loop, and on SQLite not while the
calling thread's own write transaction is open (the count's transaction waits for the
writers' turn, which that one holds until it ends: commit it first).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import threading

from sqlalchemy import BigInteger, Index, Integer, String, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from doorstep import db

log = logging.getLogger(__name__)

IPV6_PREFIX = 64
KEY_FILE = "guess-limits.key"


class GuessHit(db.Base):
    """Attempts counted under one key (`Limiter`), by when they leave the window."""

    __tablename__ = "guess_hits"
    __table_args__ = (Index("ix_guess_hits_leaves_at", "leaves_at"),)  # the sweep's

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex HMAC-SHA256
    # When these attempts leave the window, in milliseconds since the epoch.
    leaves_at: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hits: Mapped[int] = mapped_column(Integer)


# A key's attempts still in the window.
_USED = text("SELECT coalesce(sum(hits), 0) FROM guess_hits WHERE key = :key AND leaves_at > :now")
# One attempt more, unless the window's limit is used: nothing is inserted then. (The
# cast: PostgreSQL would take `:key` for text here and for varchar below, and refuse.)
_COUNT = text(
    "INSERT INTO guess_hits (key, leaves_at, hits)"
    " SELECT CAST(:key AS VARCHAR(64)), :leaves_at, 1"
    " WHERE (SELECT coalesce(sum(hits), 0) FROM guess_hits"
    "   WHERE key = :key AND leaves_at > :now) < :limit"
    " ON CONFLICT (key, leaves_at) DO UPDATE SET hits = guess_hits.hits + 1"
)
# PostgreSQL: a key's counts take turns, until the transaction ends.
_TURN = text("SELECT pg_advisory_xact_lock(:lock)")
_SWEEP = text("DELETE FROM guess_hits WHERE leaves_at <= :now")


def counted_as(key: str) -> str:
    """The key under which `key`'s attempts are counted."""
    prefix, address = "", key
    if _address(key) is None:
        head, sep, rest = key.partition(":")
        prefix, address = f"{head}{sep}", rest
    ip = _address(address)
    if ip is None:
        return key
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return f"{prefix}{ip}"
    network = ipaddress.IPv6Network((int(ip), IPV6_PREFIX), strict=False)
    return f"{prefix}{network}"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Limiter:
    """One limit (`name`: its counts are its own), shared through the database by every
    process that makes it with the same name and `secret`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        name: str,
        secret: bytes,
        limit: int,
        window_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._name = name
        self._secret = secret
        self._limit = limit
        self._window = window_seconds
        self._guard = threading.Lock()
        self._swept = float("-inf")

    def allow(self, key: str, now: float) -> bool:
        """Count one attempt for `key`; False once the window's limit is used up."""
        digest = hmac.new(
            self._secret, f"{self._name}\n{counted_as(key)}".encode(), hashlib.sha256
        ).digest()
        params = {
            "key": digest.hex(),
            "now": _milliseconds(now),
            "leaves_at": _milliseconds(now + self._window),
            "limit": self._limit,
        }
        with self._sessions() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Without it, two processes counting the last try at once would both see
                # it free (READ COMMITTED). Two keys sharing a lock only wait in turn.
                session.execute(_TURN, {"lock": int.from_bytes(digest[:8], signed=True)})
            else:
                # The write lock orders SQLite's counts. A refusal is told from a reader's
                # snapshot first, which takes no writer's turn: a guesser refused at rate
                # does not hold up the entry decisions.
                db.read_only(session)
                if session.execute(_USED, params).scalar_one() >= self._limit:
                    return False
                session.commit()
            counted = session.connection().execute(_COUNT, params).rowcount == 1
            session.commit()
        self._sweep(now)
        return counted

    def _sweep(self, now: float) -> None:
        """Delete every limiter's rows out of their window, once a window per process,
        in a transaction of its own: on PostgreSQL it may wait for another process's
        sweep, and must hold no key's turn meanwhile."""
        with self._guard:
            if now - self._swept < self._window:
                return
            self._swept = now
        try:
            with self._sessions.begin() as session:
                session.execute(_SWEEP, {"now": _milliseconds(now)})
        except DBAPIError as error:
            if not db.busy(error):
                raise
            log.warning("old guess counts not deleted this time; the next sweep will: %s", error)


def _milliseconds(seconds: float) -> int:
    return math.floor(seconds * 1000)
