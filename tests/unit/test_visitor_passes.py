"""How the guest app writes a grant's schedule: on the home's wall clock, whatever the
instant's zone, across a daylight-saving change, for every kind of schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from doorstep.grants.models import AccessGrant
from doorstep.grants.service import describe


def grant(kind: str, **fields: Any) -> AccessGrant:
    return AccessGrant(**{"kind": kind, "timezone": "Europe/London", "windows": "[]", **fields})


def test_always_and_weekly_windows_are_written_with_their_days() -> None:
    assert describe(grant("always")) == "Any time"
    windows = [{"days": ["mon", "tue", "fri"], "start": "09:00", "end": "17:00"},
               {"days": ["sun"], "start": "10:00", "end": "12:30"}]  # fmt: skip
    weekly = grant("weekly", windows=orjson.dumps(windows).decode())
    assert describe(weekly) == "Mon, Tue, Fri 09:00-17:00; Sun 10:00-12:30"
    bounded = grant("weekly", windows=orjson.dumps(windows[:1]).decode(),
                    ends_at=datetime(2026, 12, 31, 23, 0, tzinfo=UTC))  # fmt: skip
    assert describe(bounded) == "Mon, Tue, Fri 09:00-17:00 (until Thu 31 Dec 2026, 23:00)"


def test_ranges_are_on_the_homes_clock_across_a_daylight_saving_change() -> None:
    # 29 Mar 2026: London moves from GMT to BST at 01:00 UTC.
    starts, ends = datetime(2026, 3, 28, 18, 0, tzinfo=UTC), datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
    assert describe(grant("range", starts_at=starts, ends_at=ends)) == (
        "Sat 28 Mar 2026, 18:00 to Sun 29 Mar 2026, 10:00"
    )
    assert describe(grant("once", starts_at=starts, ends_at=ends)).startswith(
        "Once, Sat 28 Mar 2026, 18:00 to"
    )
