"""Time-ordered ids for the tables that grow at request rate."""

from __future__ import annotations

import time

import pytest

from doorstep.db import new_id, ordered_hex, ordered_id
from doorstep.protocol.grants import TOKEN_ID_BYTES, new_token_id

NOW_NS = 1_795_000_000_000_000_000  # late 2026


def _clock(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: ns)


def test_ordered_ids_sort_by_creation_and_never_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, NOW_NS)  # all in one millisecond: only the random part differs
    earlier = [ordered_id("ent") for _ in range(2000)]
    _clock(monkeypatch, NOW_NS + 1_000_000)
    later = [ordered_id("ent") for _ in range(2000)]
    assert max(earlier) < min(later)
    assert len(set(earlier + later)) == 4000
    assert all(len(entry_id) == len("ent-") + 17 for entry_id in earlier)


def test_ordered_ids_fit_every_id_column() -> None:
    # Id columns are String(32); the longest prefix in use is "home".
    assert len(ordered_id("home")) <= 32
    assert len(new_id("home")) <= 32
    assert len(ordered_hex()) == 24  # command ids: as long as the 12 random bytes before


def test_token_ids_keep_their_size_and_order(monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, NOW_NS)
    first = new_token_id()
    _clock(monkeypatch, NOW_NS + 1_000_000)
    second = new_token_id()
    assert len(first) == len(second) == TOKEN_ID_BYTES
    assert first < second
    assert len({new_token_id() for _ in range(5000)}) == 5000
