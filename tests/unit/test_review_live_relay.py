"""The live view's relay keeps frames only of doors someone watches: the door in a
frame's path is the hub's word, and a hub (or whoever took its key out of the box)
posting frames for ever new door names must not fill the service's memory."""

from __future__ import annotations

import asyncio
import tracemalloc

from doorstep.clips import live
from doorstep.clips.live import LiveRelay

FRAME_BYTES = 60 * 1024  # under the service's 64 KiB body limit
DOORS = 100


# Only what this file and the relay allocate counts: the test process's other threads
# (a server an earlier test left winding down, say) allocate meanwhile too.
_OURS = [tracemalloc.Filter(True, __file__), tracemalloc.Filter(True, live.__file__)]


def _held() -> int:
    """Bytes allocated by this file or the relay since tracing began, and still held."""
    snapshot = tracemalloc.take_snapshot().filter_traces(_OURS)
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _jpeg(index: int) -> bytes:
    return b"\xff\xd8" + index.to_bytes(4, "big") * (FRAME_BYTES // 4) + b"\xff\xd9"


async def _retained_after(relay: LiveRelay, hub_id: str) -> int:
    """Bytes still allocated after the hub posts one frame to each of `DOORS` doors."""
    tracemalloc.start()
    try:
        before = _held()
        for index in range(DOORS):
            assert await relay.publish(hub_id, f"door-{index}", _jpeg(index)) is False
        return _held() - before
    finally:
        tracemalloc.stop()


def test_frames_of_doors_nobody_watches_are_not_kept() -> None:
    relay = LiveRelay()
    retained = asyncio.run(_retained_after(relay, "hub-abc"))
    assert retained < FRAME_BYTES // 2  # not DOORS frames of FRAME_BYTES held for ever
    assert relay.wanted("hub-abc") == []


async def _watch_then_leave(relay: LiveRelay) -> tuple[bytes, int]:
    stream = relay.watch("hub-abc", "front")
    first = asyncio.ensure_future(anext(stream))
    for _turn in range(100):  # yield to the loop until the viewer has subscribed
        if relay.wanted("hub-abc") == ["front"]:
            break
        await asyncio.sleep(0)
    assert await relay.publish("hub-abc", "front", _jpeg(1)) is True
    part = await first
    await stream.aclose()  # the viewer leaves
    tracemalloc.start()
    try:
        before = _held()
        assert await relay.publish("hub-abc", "front", _jpeg(2)) is False
        return part, _held() - before
    finally:
        tracemalloc.stop()


def test_a_watched_door_gets_its_frames_and_keeps_none_once_its_viewer_leaves() -> None:
    relay = LiveRelay()
    part, retained = asyncio.run(_watch_then_leave(relay))
    assert part.startswith(b"--doorstep-frame\r\n") and _jpeg(1) in part
    assert relay.wanted("hub-abc") == []
    assert retained < FRAME_BYTES // 2
