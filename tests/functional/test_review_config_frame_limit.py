"""A live-view frame from the hub may be as large as the frame route takes
(`clips.live.MAX_FRAME_BYTES`): the service-wide 64 KiB body limit does not cut a
sharp 720p JPEG short with a 413, and a frame over the route's own cap still is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from doorstep import demo
from doorstep.clips.live import MAX_FRAME_BYTES
from doorstep.hub import config as hub_config
from doorstep.protocol import hubauth


def _post_frame(live: Any, world: demo.World, frame: bytes) -> httpx.Response:
    home = world.homes[0]
    path = "/v1/hub/live/front/frame"
    header = hubauth.sign(
        hub_config.signing_key(home.hub_dir),
        hub_id=home.hub_id,
        method="POST",
        path=path,
        body=frame,
        at=int(datetime.now(UTC).timestamp()),
    )
    return httpx.post(f"{live.url}{path}", content=frame, headers={hubauth.HEADER: header})


def _jpeg(size: int) -> bytes:
    return b"\xff\xd8" + bytes(size - 2)


def test_a_frame_up_to_the_routes_cap_is_taken(live: Any, world: demo.World) -> None:
    assert live.settings.max_body_bytes < 100 * 1024 < MAX_FRAME_BYTES
    for size in (100 * 1024, MAX_FRAME_BYTES):
        answer = _post_frame(live, world, _jpeg(size))
        assert answer.status_code == 200, (size, answer.text)
        assert answer.json() == {"wanted": False}  # nobody is watching this door


def test_a_frame_over_the_routes_cap_is_refused_unread(live: Any, world: demo.World) -> None:
    answer = _post_frame(live, world, _jpeg(MAX_FRAME_BYTES + 1))
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    # The rest of the hub's routes keep the service-wide limit.
    status = httpx.post(f"{live.url}/v1/hub/live/front/frame/x", content=_jpeg(100 * 1024))
    assert status.status_code == 413
