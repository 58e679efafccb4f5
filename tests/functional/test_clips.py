"""Entry clips at the service, through the real flow: a real ffmpeg camera, the hub's
recorder and uploader, the service's store. After an entry the clip is uploaded,
checksummed, encrypted at rest and served by byte range; only the home's owner reaches
it; a deleted clip cannot be decrypted from what remains on disk; retention deletes old
clips; the privacy scan finds no video outside an entry's window."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from doorstep.cli.main import cli
from doorstep.clips import retention, service
from doorstep.clips.models import ClipRecord, HomeVideo
from doorstep.clips.storage import ClipStorage
from doorstep.clock import FrozenClock
from doorstep.homes.models import Home
from doorstep.settings import ClipSettings, NotifySettings
from doorstep.video.camera import SimulatedCamera
from doorstep.video.crypto import ObjectCipher
from doorstep.video.errors import ClipIntegrityError, ClipKeyDestroyed
from doorstep.video.liveness import Liveness
from doorstep.video.recorder import RecorderOptions
from doorstep.video.scene import delivery_walk, walk_span
from doorstep.web.timeline import timeline

if TYPE_CHECKING:
    from conftest import AuditWait, Mailbox

pytestmark = pytest.mark.slow

# The resident's drop zone: the left part of the hall, the door (and the camera's frame
# counter in the top-left corner) included; the scene's figure drops its parcel inside.
LEFT_OF_HALL = [(0.0, 0.0), (0.45, 0.0), (0.45, 1.0), (0.0, 1.0)]
DROP = (0.25, 0.75)
INTO_THE_HOUSE = (0.8, 0.7)


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


@pytest.fixture
def camera_world(make_world: Callable[..., demo.World], camera: SimulatedCamera) -> demo.World:
    locks = f'[access_points.front]\ndriver = "simulated"\ncamera = "{camera.url}"\n'
    return make_world(locks, auto_relock_seconds=None)


def delivered_with_clip(
    world: demo.World, wait_audit: AuditWait, barcode: str = "PKG-1"
) -> tuple[dict[str, Any], str]:
    """One delivery through the door; the entry (done) and its stored clip's id."""
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, [barcode])
    entry = _unlocked(world, delivery["id"], barcode)
    home.door("open_door")
    home.door("close_door")
    done = demo.wait_entry(courier, entry["id"], "done")
    stored = wait_audit(home.resident, home.id, "clip:stored", entry["id"], timeout=40)
    return done, str(stored["data"]["clip_id"])


def _unlocked(world: demo.World, delivery_id: str, barcode: str = "PKG-1") -> dict[str, Any]:
    """Request the entry once the hub's camera is live with its pre-roll buffered."""
    home, courier = world.homes[0], world.couriers[0][1]
    assert camera_reports(world, pre_roll_buffered, 20), "the camera never went live"
    entry = demo.request_entry(courier, delivery_id, barcode, home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    return entry


def camera_reports(
    world: demo.World, condition: Callable[[Any, Liveness], bool], timeout: float
) -> bool:
    """Wait on the hub's own camera reports (about one a second) until `condition` holds
    for the camera and its latest report."""
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


def pre_roll_buffered(camera: Any, _report: Liveness) -> bool:
    return bool(camera.buffered_seconds() >= RecorderOptions().pre_roll)


def _storage(live: Any) -> ClipStorage:
    return ClipStorage.under(live.data_dir)


def _window(entry: dict[str, Any]) -> tuple[float, float]:
    created = datetime.fromisoformat(entry["created_at"]).timestamp()
    done = datetime.fromisoformat(entry["done_at"]).timestamp()
    return created - service.PRE_ROLL_SLACK_SECONDS, done + service.POST_ROLL_SLACK_SECONDS


def _probe_duration(data: bytes, tmp_path: Path) -> float:
    path = tmp_path / "played.mp4"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        check=True,
        capture_output=True,
    ).stdout
    return float(json.loads(out)["format"]["duration"])


def test_a_clip_is_uploaded_encrypted_served_by_range_and_only_to_its_owner(
    live: Any, camera_world: demo.World, wait_audit: AuditWait, tmp_path: Path
) -> None:
    home = camera_world.homes[0]
    entry, clip_id = delivered_with_clip(camera_world, wait_audit)
    clips = home.resident.call("GET", f"/v1/homes/{home.id}/clips")
    assert [c["id"] for c in clips] == [clip_id]
    clip = clips[0]
    started = datetime.fromisoformat(clip["started_at"]).timestamp()
    ended = datetime.fromisoformat(clip["ended_at"]).timestamp()
    unlocked = datetime.fromisoformat(entry["unlocked_at"]).timestamp()
    done = datetime.fromisoformat(entry["done_at"]).timestamp()
    assert started < unlocked and ended > done  # from before the unlock to after the relock

    http = home.resident.http
    head = http.get(f"/v1/clips/{clip_id}/video", headers={"range": "bytes=0-99"})
    assert head.status_code == 206
    assert head.headers["accept-ranges"] == "bytes"
    assert head.headers["content-range"] == f"bytes 0-99/{clip['size']}"
    assert len(head.content) == 100 and head.content[4:8] == b"ftyp"
    half = clip["size"] // 2
    middle = http.get(f"/v1/clips/{clip_id}/video", headers={"range": f"bytes={half}-{half + 9}"})
    whole = http.get(f"/v1/clips/{clip_id}/video")
    assert whole.status_code == 200 and len(whole.content) == clip["size"]
    assert middle.status_code == 206 and middle.content == whole.content[half : half + 10]
    tail = http.get(f"/v1/clips/{clip_id}/video", headers={"range": "bytes=-10"})
    assert tail.content == whole.content[-10:]
    beyond = http.get(f"/v1/clips/{clip_id}/video", headers={"range": f"bytes={clip['size']}-"})
    assert beyond.status_code == 416
    # The MP4 is the recorded window: its duration matches the clip's time range.
    assert abs(_probe_duration(whole.content, tmp_path) - (ended - started)) < 1.0
    thumbnail = http.get(f"/v1/clips/{clip_id}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"

    # At rest (once the motion analysis has removed its working copy): no plaintext
    # anywhere in the service's data directory, nothing left in staging.
    wait_audit(home.resident, home.id, "clip:motion_analysed", entry["id"])
    storage = _storage(live)
    for path in live.data_dir.rglob("*"):
        if path.is_file() and path.suffix not in (".db", ".db-wal", ".db-shm", ".log"):
            assert whole.content[:4096] not in path.read_bytes(), path
    assert list(storage.staging.iterdir()) == []
    # Viewing is audited, once per view (not per range request).
    with live.sessions() as session:
        views = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "clip:viewed", AuditEvent.subject == entry["id"]
            )
        ).all()
    assert 1 <= len(views) <= 2  # the two requests from byte 0

    # The privacy scan: every stored clip decrypts and lies inside its entry's window.
    with live.sessions() as session:
        assert service.scan(session, storage, now=datetime.now(UTC)) == []
        manifest = service.vault_of(
            session, storage, home_id=home.id, now=datetime.now(UTC)
        ).manifest(clip_id)
    low, high = _window(entry)
    assert low <= manifest.started_at <= manifest.ended_at <= high
    # The same scan from the command line.
    scanned = CliRunner().invoke(
        cli,
        ["clips", "scan", "--data-dir", str(live.data_dir), "--database-url",
         live.settings.resolved_database_url],
    )  # fmt: skip
    assert scanned.exit_code == 0, scanned.output
    assert "1 clips in the store, all inside their entry's window" in scanned.output
    _only_the_owner_reaches(live, camera_world, entry, clip_id)


def _only_the_owner_reaches(live: Any, camera_world: demo.World, entry: dict[str, Any],
                            clip_id: str) -> None:  # fmt: skip
    home = camera_world.homes[0]
    with demo.Api(live.url) as anonymous:
        anonymous.call(
            "POST",
            "/v1/residents",
            201,
            json={"email": "mallory@doorstep.test", "name": "M", "password": demo.PASSWORD},
        )
    other = demo.Api.login(
        live.url, grant_type="password", username="mallory@doorstep.test", password=demo.PASSWORD
    )
    courier = camera_world.couriers[0][1]
    for api in (other, courier):
        expected = 404 if api is other else 403
        for method, path in [
            ("GET", f"/v1/homes/{home.id}/clips"),
            ("GET", f"/v1/clips/{clip_id}/video"),
            ("GET", f"/v1/clips/{clip_id}/thumbnail"),
            ("DELETE", f"/v1/clips/{clip_id}"),
            ("GET", f"/v1/homes/{home.id}/video-settings"),
            ("POST", f"/v1/homes/{home.id}/entries/{entry['id']}/live-url"),
        ]:
            response = api.http.request(method, path)
            assert response.status_code == expected, (method, path, response.text)
    other.close()
    # Unsigned or wrongly signed hub requests change nothing.
    with httpx.Client(base_url=live.url) as raw:
        assert raw.post("/v1/hub/clips", content=b"{}").status_code == 401
        forged = {"doorstep-hub-auth": f"hub={home.hub_id},t=1,sig={'A' * 86}"}
        assert raw.get(f"/v1/hub/clips/{clip_id}", headers=forged).status_code == 401
    assert [c["id"] for c in home.resident.call("GET", f"/v1/homes/{home.id}/clips")] == [clip_id]


def test_deleted_and_expired_clips_leave_nothing_that_decrypts(
    live: Any, camera_world: demo.World, wait_audit: AuditWait, tmp_path: Path
) -> None:
    home = camera_world.homes[0]
    entry, clip_id = delivered_with_clip(camera_world, wait_audit)
    storage = _storage(live)
    # What an attacker could have kept: a copy of the ciphertext taken before the delete.
    kept = tmp_path / "kept"
    shutil.copytree(storage.store.root / clip_id, kept)  # type: ignore[attr-defined]
    with live.sessions() as session:
        row = session.get(HomeVideo, home.id)
        assert row is not None
        home_key = storage.master.unwrap(row.wrapped_key, home.id)
    wrapped = storage.keys.get(clip_id)

    assert home.resident.http.delete(f"/v1/clips/{clip_id}").status_code == 204

    assert storage.store.list(f"{clip_id}/") == []
    with pytest.raises(ClipKeyDestroyed):
        storage.keys.get(clip_id)
    # No remaining wrapped key, unwrapped with the home key, opens the kept ciphertext.
    stored = (kept / "video.mp4").read_bytes()
    for other in storage.keys.ids():
        try:
            clip_key = home_key.unwrap(storage.keys.get(other), other)
        except ClipIntegrityError:
            continue
        with pytest.raises(ClipIntegrityError):
            ObjectCipher(clip_key, f"{clip_id}/video.mp4").decrypt_all([stored])
    assert b"ftyp" not in stored
    # The wrapped key itself is nowhere on the service's disk any more (database included).
    for path in live.data_dir.rglob("*"):
        assert not path.is_file() or wrapped not in path.read_bytes(), path
    assert home.resident.call("GET", f"/v1/homes/{home.id}/clips") == []
    gone = home.resident.http.get(f"/v1/clips/{clip_id}/video")
    assert gone.status_code == 404
    wait_audit(home.resident, home.id, "clip:deleted", entry["id"], clip_id=clip_id)

    # Retention: a second entry's clip, kept for the home's setting and no longer.
    entry_2, clip_2 = delivered_with_clip(camera_world, wait_audit, "PKG-2")
    settings = home.resident.call("GET", f"/v1/homes/{home.id}/video-settings")
    assert settings["retention_days"] == 30
    home.resident.call("PUT", f"/v1/homes/{home.id}/video-settings", json={"retention_days": 2})
    storage = _storage(live)
    now = datetime.now(UTC)
    one_day = FrozenClock(now + timedelta(days=1))
    assert retention.run_once(live.sessions, storage, ClipSettings(), one_day) == (0, 0)
    three_days = FrozenClock(now + timedelta(days=3))
    assert retention.run_once(live.sessions, storage, ClipSettings(), three_days) == (1, 0)
    with live.sessions() as session:
        row = session.get(ClipRecord, clip_2)
        assert row is not None and (row.state, row.delete_reason) == ("deleted", "retention")
    assert storage.store.list(f"{clip_2}/") == []
    with pytest.raises(ClipKeyDestroyed):
        storage.keys.get(clip_2)
    wait_audit(home.resident, home.id, "clip:expired", entry_2["id"], clip_id=clip_2)


def test_motion_beyond_the_drop_zone_flags_the_entry_and_tells_the_resident(
    live: Any,
    camera_world: demo.World,
    camera: SimulatedCamera,
    wait_audit: AuditWait,
    mailbox: tuple[Mailbox, int],
) -> None:
    home, courier = camera_world.homes[0], camera_world.couriers[0][1]
    home.resident.call(
        "PUT", f"/v1/homes/{home.id}/video-settings", json={"drop_zone": LEFT_OF_HALL}
    )
    delivery = demo.book(camera_world, home, ["PKG-1"])
    entry = _unlocked(camera_world, delivery["id"])
    home.door("open_door")
    walk = delivery_walk(DROP, beyond=INTO_THE_HOUSE)
    hub_camera = _hub_camera(camera_world)
    target = hub_camera.liveness().frames + round((walk_span(walk) + 0.5) * camera.fps)
    camera.walk(walk)  # in, to the drop spot, a detour into the house, and out
    walked = camera_reports(camera_world, lambda cam, _r: cam.liveness().frames >= target, 30)
    assert walked, "the walk did not finish"
    home.door("close_door")
    demo.wait_entry(courier, entry["id"], "done")

    flagged = wait_audit(home.resident, home.id, "clip:motion_beyond_zone", entry["id"], 60)
    assert flagged["data"]["beyond_seconds"] >= 1.0
    # In view about as long as the walk took.
    assert abs(flagged["data"]["presence_seconds"] - walk_span(walk)) < 2.0
    [clip] = home.resident.call("GET", f"/v1/homes/{home.id}/clips")
    assert clip["motion"]["beyond_zone"] is True
    with live.sessions() as session:
        home_row = session.get(Home, home.id)
        assert home_row is not None
        [shown] = [e for e in timeline(session, home=home_row, limit=5) if e.id == entry["id"]]
    assert service.BEYOND_ZONE_FLAG in shown.flags
    box, _port = mailbox
    subject = "Someone went beyond your drop zone"
    assert subject in box.wait_subjects([subject], timeout=20)


def _hub_camera(world: demo.World) -> Any:
    hub = world.homes[0].hub_process
    assert hub is not None
    return hub.agent.cameras["front"]  # type: ignore[attr-defined]
