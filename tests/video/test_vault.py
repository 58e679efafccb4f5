"""ClipVault over the filesystem store: ciphertext only, range reads, crypto-shredding."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from doorstep.video.clips import Clip
from doorstep.video.crypto import FileKeyStore, HomeKey, ObjectCipher
from doorstep.video.errors import ClipIntegrityError, ClipKeyDestroyed, ClipNotFound, VideoError
from doorstep.video.storage import FileClipStore
from doorstep.video.vault import VIDEO, ClipVault, clips_outside

from .support import make_clip


@pytest.fixture
def home_key() -> HomeKey:
    return HomeKey.generate()


@pytest.fixture
def vault(tmp_path: Path, home_key: HomeKey) -> ClipVault:
    store = FileClipStore(tmp_path / "store")
    return ClipVault(store, FileKeyStore(tmp_path / "keys"), home_key, chunk_size=4096)


@pytest.fixture
def clip(tmp_path: Path) -> Clip:
    return make_clip(tmp_path / "spool" / "clips" / ("a" * 32))


def test_archive_stores_ciphertext_only_and_removes_the_plaintext(
    vault: ClipVault, clip: Clip, tmp_path: Path
) -> None:
    video, thumbnail = clip.video.read_bytes(), clip.thumbnail.read_bytes()
    stored = vault.archive(clip)
    assert not clip.video.exists() and not clip.thumbnail.exists()
    assert not clip.video.parent.exists()
    assert stored.video_bytes == len(video)
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["manifest.json", "thumbnail.jpg", "video.mp4"]
    for path in files:
        data = path.read_bytes()
        assert data.startswith(b"DSCLIP01")
        assert b"ftyp" not in data and b"moov" not in data and b"JFIF" not in data
        assert b"entry_id" not in data
        assert path.stat().st_mode & 0o777 == 0o600
    assert b"".join(vault.read(clip.clip_id)) == video
    assert vault.thumbnail(clip.clip_id) == thumbnail
    assert vault.size(clip.clip_id) == len(video)
    assert vault.manifest(clip.clip_id) == stored


def test_range_reads_serve_any_slice_of_the_video(vault: ClipVault, clip: Clip) -> None:
    video = clip.video.read_bytes()
    vault.archive(clip)
    for start, end in [(0, 1), (4095, 4097), (1000, 9000), (len(video) - 10, len(video) + 99)]:
        assert b"".join(vault.read(clip.clip_id, start, end)) == video[start:end]


def test_a_deleted_clip_cannot_be_decrypted_from_what_remains(
    vault: ClipVault, clip: Clip, tmp_path: Path, home_key: HomeKey
) -> None:
    vault.archive(clip)
    # What an attacker or a backup might still hold: every byte of the store as it was.
    leftovers = tmp_path / "leftovers"
    shutil.copytree(tmp_path / "store", leftovers)
    vault.delete(clip.clip_id)
    vault.delete(clip.clip_id)  # idempotent
    assert vault.clip_ids() == []
    assert list((tmp_path / "store").rglob("*")) == []
    assert vault.keys.ids() == []
    assert not any(p.is_file() for p in (tmp_path / "keys").rglob("*"))
    with pytest.raises(ClipKeyDestroyed):
        vault.keys.get(clip.clip_id)
    with pytest.raises(ClipNotFound):
        b"".join(vault.read(clip.clip_id))
    # With the home key but no clip key, the surviving ciphertext does not open: the
    # home key only ever wrapped the destroyed clip key, it never encrypted video.
    ciphertext = (leftovers / clip.clip_id / VIDEO).read_bytes()
    with pytest.raises(ClipIntegrityError):
        ObjectCipher(home_key.secret, f"{clip.clip_id}/{VIDEO}").decrypt_all([ciphertext])


def test_a_missing_key_reads_as_destroyed(vault: ClipVault, clip: Clip) -> None:
    vault.archive(clip)
    vault.keys.destroy(clip.clip_id)
    with pytest.raises(ClipKeyDestroyed):
        vault.thumbnail(clip.clip_id)


def test_scan_finds_clips_outside_their_entry_window(vault: ClipVault, tmp_path: Path) -> None:
    inside = vault.archive(make_clip(tmp_path / "c1", clip_id="1" * 32))
    window = (inside.started_at, inside.ended_at)
    assert clips_outside(vault, {inside.entry_id: window}) == []
    assert clips_outside(vault, {inside.entry_id: (window[0] + 1, window[1])}) == [inside]
    assert clips_outside(vault, {inside.entry_id: (window[0] + 1, window[1])}, slack=1) == []
    assert clips_outside(vault, {}) == [inside]


def test_store_rejects_names_that_leave_its_root(tmp_path: Path) -> None:
    store = FileClipStore(tmp_path / "store")
    for name in ("../x", "a/../../x", "/etc/passwd", "a//b", ".tmp-x"):
        with pytest.raises(VideoError):
            store.put(name, [b"x"])


def test_store_round_trip_and_listing(tmp_path: Path) -> None:
    store = FileClipStore(tmp_path / "store")
    assert store.put("c1/video.mp4", [b"abc", b"def"]) == 6
    store.put("c2/video.mp4", [b""])
    assert store.list() == ["c1/video.mp4", "c2/video.mp4"]
    assert store.list("c1/") == ["c1/video.mp4"]
    assert store.read_range("c1/video.mp4", 2, 3) == b"cde"
    assert store.read_range("c1/video.mp4", 5, 10) == b"f"
    assert store.size("c1/video.mp4") == 6
    store.delete("c1/video.mp4")
    assert not (tmp_path / "store" / "c1").exists()
    with pytest.raises(ClipNotFound):
        store.size("c1/video.mp4")
