"""What a hub may announce: a thumbnail is one small JPEG. A hub (or whoever took its key
out of the box) cannot make the service hold, and decrypt whole into memory on every
page that shows it, a "thumbnail" of gigabytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.clips.models import ClipRecord
from doorstep.clips.schemas import MAX_THUMBNAIL_BYTES
from doorstep.hub import config as hub_config
from doorstep.protocol import hubauth


@pytest.fixture
def done_entry(world: demo.World) -> dict[str, Any]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    home.door("close_door")
    return demo.wait_entry(courier, entry["id"], "done")


def _announce(live: Any, world: demo.World, entry: dict[str, Any], thumbnail_size: int) -> int:
    home = world.homes[0]
    start = datetime.fromisoformat(entry["unlocked_at"]).timestamp()
    end = datetime.fromisoformat(entry["done_at"]).timestamp()
    body = json.dumps(
        {
            "clip_id": "ab" * 16,
            "entry_id": entry["id"],
            "access_point": "front",
            "started_at": start,
            "ended_at": end,
            "duration": end - start,
            "armed_at": start,
            "disarmed_at": end,
            "stop_at": end,
            "complete": True,
            "video": {"size": 1000, "sha256": "0" * 64},
            "thumbnail": {"size": thumbnail_size, "sha256": "0" * 64},
        }
    ).encode()
    header = hubauth.sign(
        hub_config.signing_key(home.hub_dir),
        hub_id=home.hub_id,
        method="POST",
        path="/v1/hub/clips",
        body=body,
        at=int(datetime.now(UTC).timestamp()),
    )
    response = httpx.post(
        f"{live.url}/v1/hub/clips", content=body, headers={hubauth.HEADER: header}
    )
    return response.status_code


def _clip_rows(live: Any, entry_id: str) -> list[ClipRecord]:
    with live.sessions() as session:
        return list(session.scalars(select(ClipRecord).where(ClipRecord.entry_id == entry_id)))


def test_a_thumbnail_announced_larger_than_one_small_jpeg_is_refused(
    live: Any, world: demo.World, done_entry: dict[str, Any]
) -> None:
    assert _announce(live, world, done_entry, 2 * 1024**3) == 422
    assert _announce(live, world, done_entry, MAX_THUMBNAIL_BYTES + 1) == 422
    assert _clip_rows(live, done_entry["id"]) == []
    # The same clip with a thumbnail of a thumbnail's size opens its upload.
    assert _announce(live, world, done_entry, 20_000) == 200
    [row] = _clip_rows(live, done_entry["id"])
    assert (row.state, row.thumbnail_size) == ("uploading", 20_000)
