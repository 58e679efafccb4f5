"""What the hub remembers about keypad credentials, durably (SQLite, WAL, synchronous=FULL).

<data dir>/credentials.db holds:
- the applied desired document (its version, and its payload: signed, PINs sealed to
  this hub, so a restart can re-arm timers and re-program a lock that lost its tables);
- one row per credential the hub holds or still has to take off a lock: where it lives
  (access point, lock user index, credential index), its state, remaining uses and the
  fingerprint of the programming it carries;
- revoked grant token ids, until they expire;
- for each lock user slot the hub has cleared, when (a count that only goes up) and
  whose code it held last, so a restart keeps reusing the least recently freed slot
  first (`CredentialManager._free_slot`).
Never a PIN: the hub opens sealed PINs in memory, only to program them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY, access_point TEXT NOT NULL, fingerprint BLOB NOT NULL,
    state TEXT NOT NULL, user_index INTEGER, credential_index INTEGER, uses INTEGER);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    token_id BLOB PRIMARY KEY, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS freed_slots (
    access_point TEXT NOT NULL, user_index INTEGER NOT NULL, freed_seq INTEGER NOT NULL,
    credential_id TEXT NOT NULL, PRIMARY KEY (access_point, user_index));
"""


@dataclass
class HeldCredential:
    """One credential as the hub holds it; `slot` is the lock index (user = credential)
    while the code is on the lock, None while it is not."""

    id: str
    access_point: str
    fingerprint: bytes
    state: str
    slot: int | None = None
    uses: int | None = None


@dataclass(frozen=True)
class FreedSlot:
    """A lock user slot the hub cleared: the `seq`-th slot it freed (a count that only
    goes up, never a clock), and the credential whose code it held last."""

    access_point: str
    slot: int
    seq: int
    credential_id: str


class CredentialStore:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def applied(self) -> tuple[int, bytes | None]:
        """The applied version (0: none yet) and its payload."""
        with self._lock:
            row = self._db.execute("SELECT version, payload FROM applied").fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, None)

    def held(self) -> dict[str, HeldCredential]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, access_point, fingerprint, state, user_index, uses FROM credentials"
            ).fetchall()
        return {
            row[0]: HeldCredential(row[0], row[1], bytes(row[2]), row[3], row[4], row[5])
            for row in rows
        }

    def save(
        self,
        *,
        version: int | None = None,
        payload: bytes | None = None,
        held: Sequence[HeldCredential] = (),
        dropped: Sequence[str] = (),
        freed: Sequence[FreedSlot] = (),
    ) -> None:
        """Write a new applied version, credential changes and freed slots in one
        transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                if version is not None and payload is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO applied (id, version, payload) VALUES (1, ?, ?)",
                        (version, payload),
                    )
                self._db.executemany(
                    "INSERT OR REPLACE INTO credentials (id, access_point, fingerprint, state,"
                    " user_index, credential_index, uses) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (h.id, h.access_point, h.fingerprint, h.state, h.slot, h.slot, h.uses)
                        for h in held
                    ],
                )
                self._db.executemany(
                    "DELETE FROM credentials WHERE id = ?", [(i,) for i in dropped]
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO freed_slots (access_point, user_index, freed_seq,"
                    " credential_id) VALUES (?, ?, ?, ?)",
                    [(f.access_point, f.slot, f.seq, f.credential_id) for f in freed],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def freed_slots(self) -> list[FreedSlot]:
        with self._lock:
            rows = self._db.execute(
                "SELECT access_point, user_index, freed_seq, credential_id FROM freed_slots"
            ).fetchall()
        return [FreedSlot(str(a), int(s), int(q), str(c)) for a, s, q, c in rows]

    def revoke(self, tokens: Sequence[tuple[bytes, int]]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT INTO revoked_tokens (token_id, expires) VALUES (?, ?)"
                " ON CONFLICT(token_id) DO UPDATE SET expires = max(expires, excluded.expires)",
                tokens,
            )

    def revoked(self) -> dict[bytes, int]:
        with self._lock:
            rows = self._db.execute("SELECT token_id, expires FROM revoked_tokens").fetchall()
        return {bytes(token): int(expires) for token, expires in rows}

    def forget_revocations_expired_before(self, cutoff: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM revoked_tokens WHERE expires < ?", (cutoff,))
