"""The hub's clip upload against the live service: resumable across a dropped connection
and a hub restart (the service ends with exactly one intact clip), checksummed (a part
that does not match is refused, audited and sent again), and signed by the hub's own key
(anything else changes nothing)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from doorstep.clips import service
from doorstep.clips.models import ClipRecord
from doorstep.clips.storage import ClipStorage
from doorstep.hub import config as hub_config
from doorstep.hub.uploader import RetryPolicy, Uploader
from doorstep.protocol import hubauth
from doorstep.video.clips import Clip

CHUNK = 64 * 1024
NOW = RetryPolicy(first_seconds=0.0)  # a failed clip is due again at once


@dataclass
class CuttingProxy:
    """A TCP proxy to the service that cuts its first connection after `cut_after` bytes
    from the client (a dropped Wi-Fi link mid-upload); later connections pass whole.
    Counts what each connection carried upstream."""

    target: tuple[str, int]
    cut_after: int
    url: str = ""
    carried: list[int] = field(default_factory=list)

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            index = len(self.carried)
            self.carried.append(0)
            limit = self.cut_after if index == 0 else None
            threading.Thread(target=self._serve, args=(client, index, limit), daemon=True).start()

    def _serve(self, client: socket.socket, index: int, limit: int | None) -> None:
        upstream = socket.create_connection(self.target)
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        with client, upstream:
            while data := _recv(client):
                if limit is not None and self.carried[index] + len(data) > limit:
                    break  # cut mid-request
                self.carried[index] += len(data)
                upstream.sendall(data)
            for end in (client, upstream):  # FIN both ways, even under a blocked recv
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        return


@pytest.fixture
def done_entry(world: demo.World) -> dict[str, Any]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    home.door("close_door")
    return demo.wait_entry(courier, entry["id"], "done")


def _recorded(tmp_path: Path, entry: dict[str, Any], cut: str = "") -> tuple[Clip, str]:
    """A clip as the recorder leaves it (a real MP4 and thumbnail) for `entry`'s
    window, and the SHA-256 of its video; another `cut` is another clip of the entry
    (another id, other bytes), as the recorder cuts again after a restore."""
    folder = tmp_path / "spool" / "clips" / f"c{cut}"
    folder.mkdir(parents=True)
    video, thumbnail = folder / "clip.mp4", folder / "thumbnail.jpg"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi"),
            *("-i", "testsrc2=size=320x240:rate=25:duration=5", "-c:v", "libx264"),
            *("-crf", str(2 + len(cut)), "-pix_fmt", "yuv420p", "-movflags", "+faststart"),
            str(video),
        ],
        check=True,
    )
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(video), "-frames:v", "1", str(thumbnail)],
        check=True,
    )
    start = datetime.fromisoformat(entry["unlocked_at"]).timestamp() - 1
    end = datetime.fromisoformat(entry["done_at"]).timestamp() + 1
    clip = Clip(
        clip_id=hashlib.md5((entry["id"] + cut).encode()).hexdigest(),  # noqa: S324 - an id
        entry_id=entry["id"],
        video=video,
        thumbnail=thumbnail,
        started_at=start,
        ended_at=end,
        duration=4.0,
        armed_at=start + 1,
        disarmed_at=end - 1,
        stop_at=end,
        gaps=(),
        complete=True,
    )
    return clip, hashlib.sha256(video.read_bytes()).hexdigest()


def _uploader(world: demo.World, url: str | None) -> Uploader:
    home = world.homes[0]
    key = hub_config.signing_key(home.hub_dir)
    return Uploader(
        home.hub_dir, hub_id=home.hub_id, key=key, service_url=url, chunk_bytes=CHUNK, retry=NOW
    )


def _stored_video(live: Any, home_id: str, clip_id: str) -> bytes:
    storage = ClipStorage.under(live.data_dir)
    with live.sessions() as session:
        vault = service.vault_of(session, storage, home_id=home_id, now=datetime.now(UTC))
        return b"".join(vault.read(clip_id))


def _clip_rows(live: Any, entry_id: str) -> list[ClipRecord]:
    with live.sessions() as session:
        return list(session.scalars(select(ClipRecord).where(ClipRecord.entry_id == entry_id)))


@pytest.fixture
def proxy(live: Any) -> Iterator[CuttingProxy]:
    host, port = live.url.removeprefix("http://").split(":")
    cutting = CuttingProxy((host, int(port)), cut_after=3 * CHUNK)
    cutting.start()
    yield cutting
    cutting.stop()


def test_an_upload_cut_mid_way_resumes_after_a_hub_restart(
    live: Any,
    world: demo.World,
    done_entry: dict[str, Any],
    proxy: CuttingProxy,
    tmp_path: Path,
) -> None:
    home = world.homes[0]
    clip, digest = _recorded(tmp_path, done_entry)
    size = clip.video.stat().st_size
    assert size > 6 * CHUNK
    first = _uploader(world, proxy.url)
    first.enqueue(clip, access_point="front")
    assert not clip.video.exists()  # taken over from the recorder's spool, durably queued

    assert first.run_pending() == 0  # the link dropped mid-upload
    [queued] = first.pending()
    assert queued.attempts == 1
    held = ClipStorage.under(live.data_dir).staged(clip.clip_id, "video").stat().st_size
    assert 0 < held < size
    first.close()  # the hub dies with the clip half sent

    restarted = _uploader(world, None)  # no --service: the queue remembers where to send
    assert restarted.run_pending() == 1
    assert restarted.pending() == []
    assert not (home.hub_dir / "uploads" / clip.clip_id).exists()
    # It sent only what the service did not hold.
    assert sum(proxy.carried[1:]) < size - held + 64 * 1024
    restarted.close()

    [row] = _clip_rows(live, done_entry["id"])
    assert (row.id, row.state, row.video_size) == (clip.clip_id, "stored", size)
    assert hashlib.sha256(_stored_video(live, home.id, clip.clip_id)).hexdigest() == digest


def test_a_part_that_does_not_match_its_checksum_is_refused_and_sent_again(
    live: Any, world: demo.World, done_entry: dict[str, Any], tmp_path: Path
) -> None:
    home = world.homes[0]
    clip, digest = _recorded(tmp_path, done_entry)
    uploader = _uploader(world, live.url)
    uploader.enqueue(clip, access_point="front")
    queued = home.hub_dir / "uploads" / clip.clip_id / "video.mp4"
    original = queued.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF  # one bit flipped between the hub and the store
    queued.write_bytes(bytes(damaged))

    assert uploader.run_pending() == 0
    [row] = _clip_rows(live, done_entry["id"])
    assert row.state == "uploading"
    staged = ClipStorage.under(live.data_dir).staged(clip.clip_id, "video")
    assert not staged.exists()  # the part starts over
    with live.sessions() as session:
        rejected = session.scalars(
            select(AuditEvent.data).where(AuditEvent.action == "clip:upload_rejected")
        ).all()
    assert [r["clip_id"] for r in rejected] == [clip.clip_id]

    queued.write_bytes(original)
    assert uploader.run_pending() == 1
    [row] = _clip_rows(live, done_entry["id"])
    assert row.state == "stored"
    assert hashlib.sha256(_stored_video(live, home.id, clip.clip_id)).hexdigest() == digest
    uploader.close()


def test_only_the_entrys_own_hub_can_upload(
    live: Any, world: demo.World, done_entry: dict[str, Any], tmp_path: Path
) -> None:
    home = world.homes[0]
    clip, _digest = _recorded(tmp_path, done_entry)
    body = (
        b'{"clip_id": "%s", "entry_id": "%s", "access_point": "front", "started_at": 0,'
        b' "ended_at": 0, "duration": 1, "armed_at": 0, "disarmed_at": 0, "stop_at": 0,'
        b' "complete": true, "video": {"size": 1, "sha256": "%s"},'
        b' "thumbnail": {"size": 1, "sha256": "%s"}}'
    ) % (clip.clip_id.encode(), done_entry["id"].encode(), b"0" * 64, b"0" * 64)

    def post(key: Ed25519PrivateKey, hub_id: str, at: int, content: bytes = body) -> int:
        header = hubauth.sign(key, hub_id=hub_id, method="POST", path="/v1/hub/clips",
                              body=body, at=at)  # fmt: skip
        response = httpx.post(
            f"{live.url}/v1/hub/clips", content=content, headers={hubauth.HEADER: header}
        )
        return response.status_code

    now = int(datetime.now(UTC).timestamp())
    hub_key = hub_config.signing_key(home.hub_dir)
    assert post(Ed25519PrivateKey.generate(), home.hub_id, now) == 401  # not its key
    assert post(hub_key, home.hub_id, now - 600) == 401  # stale
    assert post(hub_key, home.hub_id, now, content=body + b" ") == 401  # another body
    assert post(hub_key, "hub-0000000000000000", now) == 401  # no such hub
    assert httpx.post(f"{live.url}/v1/hub/clips", content=body).status_code == 401
    assert _clip_rows(live, done_entry["id"]) == []
    # Its own key, but a window the entry never had: refused too.
    assert post(hub_key, home.hub_id, now) == 422
    assert _clip_rows(live, done_entry["id"]) == []
    shutil.rmtree(clip.video.parent)


def test_a_clip_the_service_refuses_as_invalid_is_dropped_not_retried_forever(
    live: Any, world: demo.World, done_entry: dict[str, Any], tmp_path: Path
) -> None:
    """A 422 (here a thumbnail far past the service's 1 MiB cap) will be the same answer
    at every try: the hub drops the clip and logs it, instead of sending it for ever."""
    clip, _ = _recorded(tmp_path, done_entry)
    clip.thumbnail.write_bytes(os.urandom(3 * 1024 * 1024 // 2))
    uploader = _uploader(world, live.url)
    uploader.enqueue(clip, access_point="front")

    assert uploader.run_pending() == 0
    assert uploader.pending() == []
    assert not (world.homes[0].hub_dir / "uploads" / clip.clip_id).exists()
    uploader.close()
    assert _clip_rows(live, done_entry["id"]) == []


def _audited(live: Any, action: str) -> list[dict[str, Any]]:
    with live.sessions() as session:
        return list(session.scalars(select(AuditEvent.data).where(AuditEvent.action == action)))


def test_another_clip_of_the_entry_takes_over_an_unfinished_upload_never_a_stored_one(
    live: Any,
    world: demo.World,
    done_entry: dict[str, Any],
    proxy: CuttingProxy,
    tmp_path: Path,
) -> None:
    """A hub that lost its queue, or was restored from a backup, cuts the entry's video
    into a new clip: that clip replaces the upload the hub never finished (its staged
    bytes destroyed, audited), and is stored and plays. Once the entry has a stored clip,
    no other clip replaces it (nor a deleted one), and the clip taken over stays gone."""
    home, storage = world.homes[0], ClipStorage.under(live.data_dir)
    first, _ = _recorded(tmp_path, done_entry)
    lost = _uploader(world, proxy.url)
    lost.enqueue(first, access_point="front")
    assert lost.run_pending() == 0  # cut mid-way: the service holds part of the video
    assert storage.staged(first.clip_id, "video").stat().st_size > 0
    saved = tmp_path / "kept"  # the old queue, as a backup would bring it back
    shutil.copytree(home.hub_dir / "uploads", saved)
    lost.close()
    shutil.rmtree(home.hub_dir / "uploads")  # the hub loses its queue

    again, digest = _recorded(tmp_path, done_entry, cut="again")
    assert again.clip_id != first.clip_id
    uploader = _uploader(world, live.url)
    uploader.enqueue(again, access_point="front")
    assert uploader.run_pending() == 1
    uploader.close()

    rows = {row.id: row for row in _clip_rows(live, done_entry["id"])}
    assert (rows[again.clip_id].state, rows[first.clip_id].state) == ("stored", "deleted")
    assert rows[first.clip_id].delete_reason == "superseded"
    assert not (storage.staging / first.clip_id).exists()
    [superseded] = _audited(live, "clip:upload_superseded")
    assert superseded == {"clip_id": first.clip_id, "by": again.clip_id}
    played = home.resident.http.get(f"/v1/clips/{again.clip_id}/video")
    assert played.status_code == 200
    assert hashlib.sha256(played.content).hexdigest() == digest
    listed = home.resident.call("GET", f"/v1/homes/{home.id}/clips")
    assert [clip["id"] for clip in listed] == [again.clip_id]

    # The old queue comes back: its clip is gone at the service, and a third cut of the
    # entry is refused; the hub drops both, and the stored clip is untouched.
    shutil.rmtree(home.hub_dir / "uploads")
    shutil.copytree(saved, home.hub_dir / "uploads")
    restored = _uploader(world, live.url)
    third, _ = _recorded(tmp_path, done_entry, cut="third")
    restored.enqueue(third, access_point="front")
    assert restored.run_pending() == 0
    assert restored.pending() == []
    restored.close()
    rows = {row.id: row for row in _clip_rows(live, done_entry["id"])}
    assert set(rows) == {first.clip_id, again.clip_id}
    assert (rows[again.clip_id].state, rows[first.clip_id].state) == ("stored", "deleted")
    assert not (storage.staging / first.clip_id).exists()
    assert hashlib.sha256(_stored_video(live, home.id, again.clip_id)).hexdigest() == digest
    assert len(_audited(live, "clip:upload_superseded")) == 1

    # Nor does a clip the resident deleted come back as another cut.
    assert home.resident.http.delete(f"/v1/clips/{again.clip_id}").status_code == 204
    late = _uploader(world, live.url)
    fourth, _ = _recorded(tmp_path, done_entry, cut="fourth")
    late.enqueue(fourth, access_point="front")
    assert late.run_pending() == 0
    late.close()
    assert {row.id for row in _clip_rows(live, done_entry["id"])} == rows.keys()
    assert home.resident.call("GET", f"/v1/homes/{home.id}/clips") == []


def test_a_queued_clip_whose_files_are_gone_is_dropped_and_holds_up_no_other(
    live: Any, world: demo.World, done_entry: dict[str, Any], tmp_path: Path
) -> None:
    """A hub brought back with its queue but not the clips' files (a partial restore)
    cannot send that clip, ever: it is dropped, and the clips queued after it (here the
    entry's video cut again) are still sent."""
    home = world.homes[0]
    cuts = [_recorded(tmp_path, done_entry, cut) for cut in ("a", "b")]
    (lost, _), (kept, digest) = sorted(cuts, key=lambda cut: cut[0].clip_id)
    uploader = _uploader(world, live.url)
    for clip in (lost, kept):
        uploader.enqueue(clip, access_point="front")
    shutil.rmtree(home.hub_dir / "uploads" / lost.clip_id)
    assert [item.clip_id for item in uploader.pending()] == [lost.clip_id, kept.clip_id]

    assert uploader.run_pending() == 1
    assert uploader.pending() == []
    uploader.close()
    rows = {row.id: row.state for row in _clip_rows(live, done_entry["id"])}
    assert rows == {lost.clip_id: "deleted", kept.clip_id: "stored"}
    assert hashlib.sha256(_stored_video(live, home.id, kept.clip_id)).hexdigest() == digest


def test_an_upload_given_up_while_the_hub_was_away_is_sent_again_when_it_is_back(
    live: Any,
    world: demo.World,
    done_entry: dict[str, Any],
    proxy: CuttingProxy,
    tmp_path: Path,
) -> None:
    """The service gives up an upload left unfinished for `abandon_upload_hours` (its
    staged bytes removed). A hub that was offline that long still has the clip: when it
    is back it sends it again, whole, and the clip is stored and plays."""
    home, storage = world.homes[0], ClipStorage.under(live.data_dir)
    clip, digest = _recorded(tmp_path, done_entry)
    away = _uploader(world, proxy.url)
    away.enqueue(clip, access_point="front")
    assert away.run_pending() == 0  # cut mid-way, then the hub is offline for days
    away.close()
    later = datetime.now(UTC) + timedelta(hours=49)
    with live.sessions() as session:
        assert (
            service.abandon_stale_uploads(
                session, storage, now=later, older_than=timedelta(hours=48)
            )
            == 1
        )
        session.commit()
    assert not (storage.staging / clip.clip_id).exists()

    back = _uploader(world, live.url)
    assert back.run_pending() == 1
    assert back.pending() == []
    back.close()
    [row] = _clip_rows(live, done_entry["id"])
    assert (row.id, row.state, row.delete_reason) == (clip.clip_id, "stored", None)
    played = home.resident.http.get(f"/v1/clips/{clip.clip_id}/video")
    assert hashlib.sha256(played.content).hexdigest() == digest
    [reopened] = _audited(live, "clip:upload_reopened")
    assert reopened == {"clip_id": clip.clip_id}
