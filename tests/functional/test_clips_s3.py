"""The live service with its clip objects in an S3 bucket (`clips.store = "s3"`, set the
way an operator does, through DOORSTEP_CLIPS__* variables): the hub's upload lands in
the bucket as ciphertext, nothing in the local objects folder, the keys stay local; the
resident plays it back by range; deleting it empties the bucket.

The bucket is moto's S3 server on loopback (no S3 on this machine; it speaks the S3 REST
protocol, and the service talks to it with boto3 as it would to MinIO or AWS)."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from doorstep import demo
from doorstep.clips.storage import ClipStorage
from doorstep.hub import config as hub_config
from doorstep.hub.uploader import RetryPolicy, Uploader
from doorstep.video.clips import Clip
from doorstep.video.s3 import S3ClipStore

if TYPE_CHECKING:
    from conftest import AuditWait

PREFIX = "site-a/clips/"
SECRET = "functional-test-secret-0123456789"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> Any:
    """A fresh bucket, seen from outside the service (a boto3 `Bucket`)."""
    session = boto3.session.Session(aws_access_key_id="ops", aws_secret_access_key=SECRET)
    resource = session.resource("s3", endpoint_url=s3_endpoint, region_name="eu-west-1")
    created = resource.create_bucket(
        Bucket=f"doorstep-{uuid.uuid4().hex[:12]}",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    return created


@pytest.fixture(autouse=True)
def s3_environment(s3_endpoint: str, bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service reads these when `live` builds its settings (autouse fixtures run
    before the others)."""
    for name, value in {
        "STORE": "s3",
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_REGION": "eu-west-1",
        "S3_BUCKET": bucket.name,
        "S3_PREFIX": PREFIX,
        "S3_ACCESS_KEY_ID": "ops",
        "S3_SECRET_ACCESS_KEY": SECRET,
    }.items():
        monkeypatch.setenv(f"DOORSTEP_CLIPS__{name}", value)


@pytest.fixture
def done_entry(world: demo.World) -> dict[str, Any]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    home.door("close_door")
    return demo.wait_entry(courier, entry["id"], "done")


def recorded(folder: Path, entry: dict[str, Any]) -> Clip:
    """A real MP4 and thumbnail, as the hub's recorder leaves them, for `entry`."""
    folder.mkdir(parents=True)
    video, thumbnail = folder / "clip.mp4", folder / "thumbnail.jpg"
    source = "testsrc2=size=320x240:rate=25:duration=3"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", source),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
            *("-movflags", "+faststart", str(video)),
        ],
        check=True,
        timeout=60,
    )
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(video), "-frames:v", "1", str(thumbnail)],
        check=True,
        timeout=60,
    )
    start = datetime.fromisoformat(entry["unlocked_at"]).timestamp() - 1
    end = datetime.fromisoformat(entry["done_at"]).timestamp() + 1
    return Clip(
        clip_id=uuid.uuid4().hex,
        entry_id=entry["id"],
        video=video,
        thumbnail=thumbnail,
        started_at=start,
        ended_at=end,
        duration=3.0,
        armed_at=start + 1,
        disarmed_at=end - 1,
        stop_at=end,
        gaps=(),
        complete=True,
    )


def test_an_uploaded_clip_is_stored_in_the_bucket_and_played_back(
    live: Any,
    world: demo.World,
    done_entry: dict[str, Any],
    bucket: Any,
    wait_audit: AuditWait,
    tmp_path: Path,
) -> None:
    home = world.homes[0]
    assert live.settings.clips.store == "s3"
    clip = recorded(tmp_path / "spool" / "clips" / "c", done_entry)
    video, thumbnail = clip.video.read_bytes(), clip.thumbnail.read_bytes()
    uploader = Uploader(
        home.hub_dir,
        hub_id=home.hub_id,
        key=hub_config.signing_key(home.hub_dir),
        service_url=live.url,
        chunk_bytes=64 * 1024,
        retry=RetryPolicy(first_seconds=0.0),
    )
    uploader.enqueue(clip, access_point="front")
    assert uploader.run_pending() == 1
    uploader.close()
    # The analysis after the upload reads the clip back from the bucket too.
    wait_audit(home.resident, home.id, "clip:motion_analysed", done_entry["id"])

    # In the bucket, as ciphertext; nothing in the local objects folder; keys local.
    keys = sorted(summary.key for summary in bucket.objects.all())
    parts = ("manifest.json", "thumbnail.jpg", "video.mp4")
    assert keys == [f"{PREFIX}{clip.clip_id}/{part}" for part in parts]
    for key in keys:
        stored = bucket.Object(key).get()["Body"].read()
        assert stored.startswith(b"DSCLIP01") and video[:4096] not in stored
    objects = live.data_dir / "clips" / "objects"
    assert not objects.exists() or not any(objects.rglob("*"))
    assert (live.data_dir / "clips" / "keys" / f"{clip.clip_id}.key").is_file()
    storage = ClipStorage.under(live.data_dir, live.settings.clips)
    assert isinstance(storage.store, S3ClipStore)
    assert list(storage.staging.iterdir()) == []

    # Played back by the resident, by range and whole.
    http = home.resident.http
    [listed] = home.resident.call("GET", f"/v1/homes/{home.id}/clips")
    assert (listed["id"], listed["size"]) == (clip.clip_id, len(video))
    head = http.get(f"/v1/clips/{clip.clip_id}/video", headers={"range": "bytes=0-99"})
    assert head.status_code == 206 and head.content == video[:100]
    middle = len(video) // 2
    piece = http.get(
        f"/v1/clips/{clip.clip_id}/video", headers={"range": f"bytes={middle}-{middle + 70_000}"}
    )
    assert piece.status_code == 206 and piece.content == video[middle : middle + 70_001]
    whole = http.get(f"/v1/clips/{clip.clip_id}/video")
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).digest() == hashlib.sha256(video).digest()
    assert http.get(f"/v1/clips/{clip.clip_id}/thumbnail").content == thumbnail
    past = http.get(f"/v1/clips/{clip.clip_id}/video", headers={"range": f"bytes={len(video)}-"})
    assert past.status_code == 416

    # Deleted by the resident: the key is destroyed and the bucket emptied.
    assert http.delete(f"/v1/clips/{clip.clip_id}").status_code == 204
    assert list(bucket.objects.all()) == []
    assert not (live.data_dir / "clips" / "keys" / f"{clip.clip_id}.key").exists()
    assert storage.store.list() == []
