"""What the resident's pages say when the answer is not the plain one: a remote unlock the
hub has not answered yet (it may still unlock: never "refused"), and a video setting
typed in digits Python reads but `int` does not (a clear error, not a crash)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.access.models import Entry

from .conftest import Standalone
from .support import WebClient, session_token

RESIDENT = "resident1@doorstep.test"  # the world's resident


def test_a_remote_unlock_the_hub_has_not_answered_yet_is_not_called_refused(
    live: Any,
    world: demo.World,
    web_clients: Callable[[], WebClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The unlock is sent but the hub's answer is late: the door may still open, so the
    page says so (202), and the resident is not told it stayed locked."""
    home, link = world.homes[0], live.runtime.link
    resident = web_clients().use_session(session_token(live, RESIDENT))
    resident.reauth(f"/homes/{home.id}/unlock")
    held: list[tuple[str, Any]] = []
    monkeypatch.setattr(link, "publish_command", lambda hub_id, cmd: held.append((hub_id, cmd)))
    monkeypatch.setattr(live.runtime.settings.entry, "hub_reply_timeout_seconds", 0.5)

    page = resident.post(
        f"/homes/{home.id}/doors/front/unlock", {}, csrf_from=f"/homes/{home.id}/unlock"
    )

    assert page.status_code == 202, page.text
    outcome = re.search(r'<div class="(\w+)" role="(\w+)" id="outcome">\s*<p>(.*?)</p>', page.text)
    assert outcome, page.text
    assert outcome.group(1, 2) == ("notice", "status")
    assert "refused" not in outcome.group(3)
    assert "has not answered yet" in outcome.group(3)
    # The command reaches the hub after all: the door unlocks, as the page allowed.
    [(hub_id, command)] = held
    monkeypatch.undo()
    link.publish_command(hub_id, command)
    with live.sessions() as session:
        entry_id = session.scalars(
            select(Entry.id).where(Entry.home_id == home.id).order_by(Entry.created_at.desc())
        ).first()
    assert entry_id is not None
    assert demo.wait_entry(home.resident, entry_id, "unlocked")["state"] == "unlocked"


@pytest.mark.parametrize("typed", ["²", "1" * 5000])
def test_retention_typed_in_digits_int_cannot_read_is_refused_clearly_and_changes_nothing(
    typed: str, standalone: Callable[..., Standalone]
) -> None:
    """`str.isdigit` admits "²", and 5000 digits; `int` refuses both."""
    client = standalone().web()
    client.sign_up("digits@doorstep.test")
    client.sign_in("digits@doorstep.test")
    home_id = client.add_home("Digits")
    path = f"/homes/{home_id}/video"
    kept = re.search(r'id="retention_days"[^>]* value="(\d+)"', client.get(path).text)
    assert kept

    page = client.post(path, {"retention_days": typed, "drop_zone": ""}, csrf_from=path)

    assert page.status_code == 422, page.text
    assert "Keep clips between 1 and 3650 days." in page.text
    assert f'value="{kept.group(1)}"' in client.get(path).text
