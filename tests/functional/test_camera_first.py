"""Camera first, through the real flow: a real ffmpeg camera on loopback, the hub's
recorder on it (stream copy), the service, the broker. No live camera, no unlock; a
camera lost mid-entry alerts the resident and flags the entry; every entry's clip starts
before the unlock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from doorstep.hub import camera as camera_module
from doorstep.settings import NotifySettings
from doorstep.video.camera import SimulatedCamera
from doorstep.video.liveness import Liveness

if TYPE_CHECKING:
    from conftest import AuditWait, Mailbox


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


@pytest.fixture
def camera_world(make_world: Callable[..., demo.World], camera: SimulatedCamera) -> demo.World:
    locks = f'[access_points.front]\ndriver = "simulated"\ncamera = "{camera.url}"\n'
    world = make_world(locks, auto_relock_seconds=None)
    assert _camera_reports(world, lambda camera, report: report.live, 20), "never went live"
    return world


def _camera_reports(
    world: demo.World, condition: Callable[[Any, Liveness], bool], timeout: float
) -> bool:
    """Wait on the hub's own camera reports (about one a second) until `condition` holds
    for the camera and its latest report. The condition is checked here, not in the
    recorder's callback, which must not call back into the recorder."""
    hub = world.homes[0].hub_process
    assert hub is not None
    camera = hub.agent.cameras["front"]  # type: ignore[attr-defined]
    reported = threading.Event()
    camera.watch(lambda _report: reported.set())
    deadline = time.monotonic() + timeout
    while not condition(camera, camera.liveness()):
        reported.clear()
        if not reported.wait(max(0.0, deadline - time.monotonic())):
            return condition(camera, camera.liveness())
    return True


def _pre_roll_buffered(camera: Any, _report: Liveness) -> bool:
    return bool(camera.buffered_seconds() >= camera_module.RecorderOptions().pre_roll)


def _request(world: demo.World) -> dict[str, Any]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    return demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)


def _unlock_calls(world: demo.World) -> int:
    hub = world.homes[0].hub_process
    assert hub is not None
    return int(hub.lock.unlock_calls)  # type: ignore[attr-defined]


def _audit(live: Any, entry_id: str, action: str) -> list[dict[str, Any]]:
    with live.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.data).where(
                    AuditEvent.subject == entry_id, AuditEvent.action == action
                )
            )
        )


def test_no_live_camera_no_unlock(
    live: Any, camera_world: demo.World, camera: SimulatedCamera
) -> None:
    camera.kill()
    assert _camera_reports(camera_world, lambda camera, report: not report.live, 5)
    entry = _request(camera_world)
    assert (entry["state"], entry["reason"]) == ("refused", "camera_not_live"), entry
    assert entry["advice"]
    assert _unlock_calls(camera_world) == 0


def test_a_camera_lost_mid_entry_alerts_and_flags_within_seconds(
    live: Any,
    camera_world: demo.World,
    camera: SimulatedCamera,
    mailbox: tuple[Mailbox, int],
    wait_audit: AuditWait,
) -> None:
    home, courier = camera_world.homes[0], camera_world.couriers[0][1]
    entry = _request(camera_world)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    lost_at = time.monotonic()
    camera.kill()
    wait_audit(home.resident, home.id, "entry:alert", entry["id"], alert="camera_lost")
    box, _port = mailbox
    subject = "Alert: your camera stopped during a delivery"
    assert subject in box.wait_subjects([subject], timeout=10)
    # Measured here only to catch a regression by an order of magnitude; the bench owns
    # the figure. The hub calls a camera stalled after 2 s without frames.
    assert time.monotonic() - lost_at < 10
    home.door("close_door")  # the courier finishes; the relock is still verified
    done = demo.wait_entry(courier, entry["id"], "done")
    assert (done["state"], done["alert"]) == ("done", "camera_lost")


def test_every_entry_is_recorded_from_before_the_unlock(
    live: Any, camera_world: demo.World, wait_audit: AuditWait
) -> None:
    home, courier = camera_world.homes[0], camera_world.couriers[0][1]
    # A hub just started has less than the pre-roll behind it; such a clip is marked
    # incomplete (tested in tests/video). Here the recording has run long enough.
    assert _camera_reports(camera_world, _pre_roll_buffered, 15)
    entry = _request(camera_world)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    home.door("close_door")
    done = demo.wait_entry(courier, entry["id"], "done")
    assert done["state"] == "done"
    clip = wait_audit(home.resident, home.id, "entry:clip_recorded", entry["id"], timeout=20)[
        "data"
    ]
    assert len(_audit(live, entry["id"], "entry:clip_recorded")) == 1
    unlocked = datetime.fromisoformat(done["unlocked_at"]).timestamp()
    locked = datetime.fromisoformat(done["done_at"]).timestamp()
    assert clip["started_at"] < unlocked  # the pre-roll: the clip shows the door opening
    assert clip["ended_at"] > locked  # and the post-roll after the verified relock
    assert clip["complete"] is True, clip
    # The heartbeats stopped when the entry ended: that is not a lost camera.
    assert courier.call("GET", f"/v1/entries/{entry['id']}")["alert"] is None


def test_a_frozen_camera_mid_entry_is_a_lost_camera(
    live: Any, camera_world: demo.World, camera: SimulatedCamera, wait_audit: AuditWait
) -> None:
    home, courier = camera_world.homes[0], camera_world.couriers[0][1]
    entry = _request(camera_world)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    camera.freeze()  # frames keep coming, the picture stops changing
    wait_audit(home.resident, home.id, "entry:alert", entry["id"], alert="camera_lost")
    assert courier.call("GET", f"/v1/entries/{entry['id']}")["alert"] == "camera_lost"
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"


def test_a_hub_that_goes_silent_mid_entry_is_caught_by_the_service(
    live: Any, camera_world: demo.World, mailbox: tuple[Mailbox, int], wait_audit: AuditWait
) -> None:
    home, courier = camera_world.homes[0], camera_world.couriers[0][1]
    entry = _request(camera_world)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    assert home.hub_process is not None
    home.hub_process.stop()  # the hub (and its camera heartbeats) gone mid-entry
    wait_audit(home.resident, home.id, "entry:alert", entry["id"], seen_by="service")
    assert courier.call("GET", f"/v1/entries/{entry['id']}")["alert"] == "camera_lost"
    box, _port = mailbox
    subject = "Alert: your camera stopped during a delivery"
    assert subject in box.wait_subjects([subject], timeout=10)


def test_an_unlock_the_lock_fails_still_ends_its_recording(
    live: Any, camera_world: demo.World, wait_audit: AuditWait
) -> None:
    # The camera is armed before the bolt moves. When the bolt then cannot move (a flat
    # battery), the hub closes that window as it does after a verified relock: the
    # attempt is on record, and the camera stops keeping video for an entry that ended.
    home = camera_world.homes[0]
    hub = home.hub_process
    assert hub is not None
    hub.lock.set_battery(0)  # type: ignore[attr-defined]
    entry = _request(camera_world)
    assert (entry["state"], entry["reason"]) == ("refused", "actuator_failed"), entry
    clip = wait_audit(home.resident, home.id, "entry:clip_recorded", entry["id"], timeout=20)
    assert clip["data"]["ended_at"] > clip["data"]["started_at"]
