"""Video in a real browser (Debian's Chromium): the clip of an entry plays from the
service by HTTP range requests, live view shows moving frames while the courier is
inside, and the resident draws the drop zone on the latest still. A real ffmpeg camera,
the hub's recorder and uploader, the service's encrypted store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Page, ViewportSize, expect
from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from doorstep.video.camera import SimulatedCamera, Source
from doorstep.video.liveness import Liveness
from doorstep.video.recorder import RecorderOptions

from .conftest import DESKTOP, Watched
from .support import WebClient, new_email, session_token

pytestmark = pytest.mark.slow

RESIDENT = "resident1@doorstep.test"  # the world's resident (demo.add_home)


@pytest.fixture
def camera() -> Iterator[SimulatedCamera]:
    cam = SimulatedCamera(Source.SCENE, width=320, height=240, fps=10)
    cam.start()
    yield cam
    cam.stop()


@pytest.fixture
def camera_world(make_world: Callable[..., demo.World], camera: SimulatedCamera) -> demo.World:
    locks = f'[access_points.front]\ndriver = "simulated"\ncamera = "{camera.url}"\n'
    world = make_world(locks, auto_relock_seconds=None)
    assert _camera_ready(world, 20), "the camera never went live with its pre-roll"
    return world


def _camera_ready(world: demo.World, timeout: float) -> bool:
    """Wait on the hub's camera reports (about one a second) until it is live with its
    pre-roll buffered, so the clip starts before the unlock."""
    hub = world.homes[0].hub_process
    assert hub is not None
    camera = hub.agent.cameras["front"]  # type: ignore[attr-defined]
    reported = threading.Event()
    camera.watch(lambda _report: reported.set())

    def ready(report: Liveness) -> bool:
        return report.live and camera.buffered_seconds() >= RecorderOptions().pre_roll

    deadline = time.monotonic() + timeout
    while not ready(camera.liveness()):
        reported.clear()
        if not reported.wait(max(0.0, deadline - time.monotonic())):
            return ready(camera.liveness())
    return True


@pytest.fixture
def wait_audit(live: Any) -> Callable[..., dict[str, Any]]:
    """Wait on the home's live event stream (replayed from the start) for the first
    audit record with this action and subject (as tests/functional's fixture)."""

    def wait(api: Any, home_id: str, action: str, subject: str, timeout: float = 15) -> Any:
        headers = {**api.http.headers, "last-event-id": "0"}
        deadline = time.monotonic() + timeout
        with (
            httpx.Client(timeout=httpx.Timeout(timeout)) as client,
            client.stream("GET", f"{live.url}/v1/homes/{home_id}/events", headers=headers) as r,
        ):
            for line in r.iter_lines():
                assert time.monotonic() < deadline, f"no {action} on {subject} in {timeout} s"
                if line.startswith("data: "):
                    record = orjson.loads(line.removeprefix("data: "))
                    if record["action"] == action and record["subject"] == subject:
                        return record
        raise AssertionError(f"the stream ended before {action} on {subject}")

    return wait


def _signed_in(live: Any, pages: Callable[[str, ViewportSize], Watched], name: str) -> Watched:
    watched = pages(name, DESKTOP)
    token = session_token(live, RESIDENT)
    watched.page.context.add_cookies(
        [{"name": "doorstep_session", "value": token, "url": live.url}]
    )
    return watched


def _enter(world: demo.World) -> dict[str, Any]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    return entry


def _audit(live: Any, action: str, subject: str) -> list[dict[str, Any]]:
    with live.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.data).where(
                    AuditEvent.action == action, AuditEvent.subject == subject
                )
            )
        )


def test_the_clip_of_an_entry_plays_and_the_drop_zone_is_drawn_on_its_still(
    live: Any,
    camera_world: demo.World,
    pages: Callable[[str, ViewportSize], Watched],
    wait_audit: Any,
    web_clients: Callable[[], WebClient],
) -> None:
    home, courier = camera_world.homes[0], camera_world.couriers[0][1]
    entry = _enter(camera_world)
    home.door("close_door")
    demo.wait_entry(courier, entry["id"], "done")
    stored = wait_audit(home.resident, home.id, "clip:stored", entry["id"], timeout=40)["data"]
    recorded = _audit(live, "entry:clip_recorded", entry["id"])[0]
    window = recorded["ended_at"] - recorded["started_at"]

    watched = _signed_in(live, pages, "video-clip")
    page = watched.page
    page.goto(f"/homes/{home.id}/activity")
    page.locator(f"[id='{entry['id']}']").get_by_role("link", name="Clip or live view").click()
    page.wait_for_url(f"**/entries/{entry['id']}/video")
    video = page.locator("video#clip")
    expect(video).to_have_attribute("src", f"/homes/{home.id}/clips/{stored['clip_id']}/video")
    page.evaluate("() => { const v = document.getElementById('clip'); v.muted = true; v.play(); }")
    page.wait_for_function(
        "() => { const v = document.getElementById('clip'); "
        "return v.readyState >= 2 && v.currentTime > 0.5; }"
    )
    duration = page.evaluate("() => document.getElementById('clip').duration")
    assert abs(duration - window) < 1.0, (duration, window)
    ranged = [r for r in watched.responses if "/video" in r[0] and r[1] == "media"]
    assert any(headers.get("content-range", "").startswith("bytes ") for _u, _t, headers in ranged)
    watched.shot("01-clip-playing")
    assert _audit(live, "clip:viewed", entry["id"])  # who watched what

    # The drop zone: four taps on the latest still, saved with the form.
    page.goto(f"/homes/{home.id}/video")
    canvas = page.locator("#zone-canvas")
    expect(page.locator("#zone-still")).to_be_visible()
    page.wait_for_function("() => document.getElementById('zone-still').naturalWidth > 0")
    box = canvas.bounding_box()
    assert box is not None
    corners = [(0.4, 0.5), (0.9, 0.5), (0.9, 0.95), (0.4, 0.95)]
    for x, y in corners:
        canvas.click(position={"x": x * box["width"], "y": y * box["height"]})
    expect(page.locator("#zone-count")).to_have_text("4 corners")
    watched.shot("02-drop-zone")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    zone = home.resident.call("GET", f"/v1/homes/{home.id}/video-settings")["drop_zone"]
    assert len(zone) == 4
    for (x, y), (want_x, want_y) in zip(zone, corners, strict=True):
        assert abs(x - want_x) < 0.02 and abs(y - want_y) < 0.02

    # Another resident reaches none of it.
    neighbour = new_email("neighbour")
    other = web_clients()
    other.sign_up(neighbour)
    other.sign_in(neighbour)
    csrf = other.csrf("/account/security")
    clip = f"/homes/{home.id}/clips/{stored['clip_id']}"
    for method, path in [
        ("GET", f"{clip}/video"),
        ("GET", f"{clip}/thumbnail"),
        ("POST", f"{clip}/delete"),
        ("GET", f"/homes/{home.id}/entries/{entry['id']}/video"),
        ("GET", f"/homes/{home.id}/video"),
        ("GET", f"/homes/{home.id}/video/still"),
    ]:
        answer = other.http.request(
            method, path, data={"csrf_token": csrf} if method == "POST" else None
        )
        assert answer.status_code == 404, (method, path, answer.status_code)
    assert [c["id"] for c in home.resident.call("GET", f"/v1/homes/{home.id}/clips")] == [
        stored["clip_id"]
    ]


HASH_LIVE = """() => {
    window.liveHash = () => {
        const img = document.getElementById('live-view');
        if (!img.naturalWidth) return '';
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let h = 0; for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) >>> 0;
        return String(h);
    };
}"""


def _next_frame(page: Page, previous: str) -> str:
    """Wait (polling in the page) until the live picture differs from `previous`."""
    page.wait_for_function(
        "(previous) => { const h = window.liveHash(); return h !== '' && h !== previous; }",
        arg=previous,
        timeout=10_000,
    )
    current: str = page.evaluate("() => window.liveHash()")
    return current


def test_live_view_shows_moving_frames_during_an_entry(
    live: Any,
    camera_world: demo.World,
    camera: SimulatedCamera,
    pages: Callable[[str, ViewportSize], Watched],
    wait_audit: Any,
) -> None:
    home, courier = camera_world.homes[0], camera_world.couriers[0][1]
    entry = _enter(camera_world)
    watched = _signed_in(live, pages, "video-live")
    page = watched.page
    page.goto(f"/homes/{home.id}/entries/{entry['id']}/video")
    page.get_by_role("button", name="Watch live").click()
    expect(page.locator("#live-status")).to_have_text("Live")
    page.evaluate(HASH_LIVE)
    frame = _next_frame(page, "")
    for _ in range(3):  # the picture keeps changing: three new frames in a row
        frame = _next_frame(page, frame)
    watched.shot("01-live-view")
    wait_audit(home.resident, home.id, "live:viewed", entry["id"])
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"
