"""The S3 clip store against a real S3 HTTP endpoint (moto's server on loopback): the
`ClipStore` contract it shares with the file store, multipart uploads that either
complete or leave nothing, names refused before any request, errors without secrets,
the vault on top of it (ranges, crypto-shredding), and its settings."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from doorstep.cli.main import cli
from doorstep.clips.storage import ClipStorage
from doorstep.settings import ClipSettings, Settings
from doorstep.video.clips import Clip
from doorstep.video.crypto import FileKeyStore, HomeKey, ObjectCipher
from doorstep.video.errors import (
    ClipIntegrityError,
    ClipKeyDestroyed,
    ClipNotFound,
    ClipStoreUnavailable,
    VideoError,
)
from doorstep.video.s3 import MIN_PART_SIZE, S3ClipStore
from doorstep.video.storage import ClipStore, FileClipStore
from doorstep.video.vault import VIDEO, ClipVault

from .s3_server import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    admin_client,
    bucket_keys,
    new_bucket,
    s3_endpoint,
)
from .support import make_clip

PREFIX = "deployment-1/clips/"
BAD_NAMES = ("../x", "a/../../x", "/etc/passwd", "a//b", ".tmp-x", "", "a/", "c1/v\n", "a b")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_endpoint() as url:
        yield url


@pytest.fixture
def bucket(endpoint: str) -> str:
    return new_bucket(endpoint)


def s3_store(endpoint: str, bucket: str, **options: Any) -> S3ClipStore:
    settings: dict[str, Any] = {
        "bucket": bucket,
        "endpoint_url": endpoint,
        "region": REGION,
        "prefix": PREFIX,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "part_size": MIN_PART_SIZE,
        "page_size": 2,  # every listing of more than two objects pages
    }
    return S3ClipStore(**{**settings, **options})


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ClipStore:
    """Each contract test runs on both stores."""
    if request.param == "file":
        return FileClipStore(tmp_path / "store")
    endpoint: str = request.getfixturevalue("endpoint")
    return s3_store(endpoint, new_bucket(endpoint))


@pytest.fixture
def home_key() -> HomeKey:
    return HomeKey.generate()


@pytest.fixture
def clip(tmp_path: Path) -> Clip:
    return make_clip(tmp_path / "spool" / "clips" / ("a" * 32))


# ---- the ClipStore contract, on both stores ------------------------------------------


def test_round_trip_and_range_reads(store: ClipStore) -> None:
    assert store.put("c1/video.mp4", [b"abc", b"", b"def"]) == 6
    assert store.size("c1/video.mp4") == 6
    assert store.read_range("c1/video.mp4", 0, 6) == b"abcdef"
    assert store.read_range("c1/video.mp4", 2, 3) == b"cde"
    assert store.read_range("c1/video.mp4", 5, 10) == b"f"  # fewer at the end
    assert store.read_range("c1/video.mp4", 6, 10) == b""  # at the end
    assert store.read_range("c1/video.mp4", 60, 10) == b""  # past it
    assert store.read_range("c1/video.mp4", 1, 0) == b""


def test_an_empty_object(store: ClipStore) -> None:
    assert store.put("c1/thumbnail.jpg", []) == 0
    assert store.size("c1/thumbnail.jpg") == 0
    assert store.read_range("c1/thumbnail.jpg", 0, 10) == b""
    assert store.list() == ["c1/thumbnail.jpg"]


def test_put_replaces_the_object(store: ClipStore) -> None:
    store.put("c1/video.mp4", [b"a much longer first version"])
    assert store.put("c1/video.mp4", [b"second"]) == 6
    assert store.size("c1/video.mp4") == 6
    assert store.read_range("c1/video.mp4", 0, 100) == b"second"
    assert store.list() == ["c1/video.mp4"]


def test_a_missing_object_is_not_found_and_delete_is_idempotent(store: ClipStore) -> None:
    with pytest.raises(ClipNotFound):
        store.size("c1/video.mp4")
    with pytest.raises(ClipNotFound):
        store.read_range("c1/video.mp4", 0, 10)
    with pytest.raises(ClipNotFound):
        store.read_range("c1/video.mp4", 0, 0)
    store.delete("c1/video.mp4")
    store.put("c1/video.mp4", [b"x"])
    store.delete("c1/video.mp4")
    store.delete("c1/video.mp4")
    with pytest.raises(ClipNotFound):
        store.size("c1/video.mp4")
    assert store.list() == []


def test_list_is_sorted_and_filtered_by_prefix(store: ClipStore) -> None:
    names = ["c2/video.mp4", "c1/video.mp4", "c10/a", "c1/thumbnail.jpg", "c1/manifest.json"]
    for name in names:
        store.put(name, [name.encode()])
    assert store.list() == sorted(names)
    assert store.list("c1/") == ["c1/manifest.json", "c1/thumbnail.jpg", "c1/video.mp4"]
    assert store.list("c1") == [*store.list("c1/"), "c10/a"]
    assert store.list("c3/") == []


def test_bad_names_are_refused(store: ClipStore) -> None:
    for name in BAD_NAMES:
        with pytest.raises(VideoError):
            store.put(name, [b"x"])
        with pytest.raises(VideoError):
            store.size(name)
        with pytest.raises(VideoError):
            store.read_range(name, 0, 1)
    assert store.list() == []


# ---- what only the S3 store does -----------------------------------------------------


def test_keys_live_under_the_prefix_and_other_keys_are_not_listed(
    endpoint: str, bucket: str
) -> None:
    store = s3_store(endpoint, bucket, prefix="/deployment-1/clips")  # normalised
    store.put("c1/video.mp4", [b"x"])
    admin = admin_client(endpoint)
    admin.put_object(Bucket=bucket, Key="elsewhere/c1/video.mp4", Body=b"not ours")
    admin.put_object(Bucket=bucket, Key=f"{PREFIX}odd name", Body=b"not ours either")
    assert bucket_keys(endpoint, bucket) == [
        f"{PREFIX}c1/video.mp4",
        f"{PREFIX}odd name",
        "elsewhere/c1/video.mp4",
    ]
    assert store.list() == ["c1/video.mp4"]
    assert s3_store(endpoint, bucket, prefix="").list() == [
        f"{PREFIX}c1/video.mp4",
        "elsewhere/c1/video.mp4",
    ]


def test_listing_pages_through_many_keys(endpoint: str, bucket: str) -> None:
    store = s3_store(endpoint, bucket, page_size=3)
    names = [f"c{index:02d}/video.mp4" for index in range(11)]
    for name in reversed(names):
        store.put(name, [b"x"])
    first_page = admin_client(endpoint).list_objects_v2(Bucket=bucket, Prefix=PREFIX, MaxKeys=3)
    assert first_page["IsTruncated"]  # so the store had to follow continuation tokens
    assert store.list() == names
    assert store.list("c1") == ["c10/video.mp4"]


def odd_chunks(
    data: bytes, sizes: tuple[int, ...] = (65_537, 1, 3_000_017, 0, 777)
) -> Iterator[bytes]:
    offset, index = 0, 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        yield data[offset : offset + size]
        offset, index = offset + size, index + 1


def test_a_large_object_goes_up_in_parts_and_reads_back_exactly(endpoint: str, bucket: str) -> None:
    store = s3_store(endpoint, bucket)
    data = hashlib.shake_256(b"clip").digest(12 * 1024 * 1024 + 12_345)
    assert store.put("c1/video.mp4", odd_chunks(data)) == len(data)
    assert store.size("c1/video.mp4") == len(data)
    head = admin_client(endpoint).head_object(Bucket=bucket, Key=f"{PREFIX}c1/video.mp4")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object of three parts
    assert _read_all(store, "c1/video.mp4", 1024 * 1024) == data
    across = MIN_PART_SIZE - 5
    assert store.read_range("c1/video.mp4", across, 10) == data[across : across + 10]
    assert store.read_range("c1/video.mp4", len(data) - 3, 10) == data[-3:]
    assert admin_client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_an_object_of_exactly_one_part_is_stored_whole(endpoint: str, bucket: str) -> None:
    store = s3_store(endpoint, bucket)
    data = bytes(range(256)) * (MIN_PART_SIZE // 256)
    assert store.put("c1/video.mp4", odd_chunks(data)) == MIN_PART_SIZE
    assert _read_all(store, "c1/video.mp4", 1024 * 1024) == data


def failing_after(data: bytes, chunk: int) -> Iterator[bytes]:
    """The encryption of a clip that fails part-way (its source vanished, say)."""
    for offset in range(0, len(data), chunk):
        yield data[offset : offset + chunk]
    raise OSError("the spool file went away")


@pytest.mark.parametrize("sent", [11 * 1024 * 1024, 1024 * 1024], ids=["multipart", "single"])
def test_a_failed_upload_leaves_no_object_and_no_pending_upload(
    endpoint: str, bucket: str, sent: int
) -> None:
    store = s3_store(endpoint, bucket)
    store.put("c1/video.mp4", [b"the previous version"])
    with pytest.raises(OSError, match="went away"):
        store.put("c1/video.mp4", failing_after(b"\x5a" * sent, 100_003))
    with pytest.raises(OSError, match="went away"):
        store.put("c2/video.mp4", failing_after(b"\x5a" * sent, 100_003))
    admin = admin_client(endpoint)
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert bucket_keys(endpoint, bucket) == [f"{PREFIX}c1/video.mp4"]
    assert store.read_range("c1/video.mp4", 0, 100) == b"the previous version"


def test_a_failure_at_the_endpoint_aborts_the_upload(endpoint: str, bucket: str) -> None:
    store = s3_store(endpoint, bucket)
    admin = admin_client(endpoint)

    def upload_aborted_mid_way() -> Iterator[bytes]:
        yield b"\x01" * MIN_PART_SIZE
        yield b"\x02" * MIN_PART_SIZE
        # Two parts are up: the upload is aborted behind the store's back (as a lifecycle
        # rule or another process might), so the third part fails at the endpoint.
        for upload in admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            admin.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        yield b"\x03"

    with pytest.raises(ClipStoreUnavailable, match="UploadPart of c1/video"):
        store.put("c1/video.mp4", upload_aborted_mid_way())
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert bucket_keys(endpoint, bucket) == []


def test_bad_names_are_refused_before_any_request() -> None:
    # An endpoint that accepts connections but is never answered: a request would show
    # up as a pending connection (and hang until the read timeout).
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        store = s3_store(url, "doorstep-clips")
        for name in BAD_NAMES:
            for call in _calls(store, name):
                with pytest.raises(VideoError, match="invalid object name"):
                    call()
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_errors_name_the_operation_but_never_the_credentials(endpoint: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    unreachable = s3_store(
        f"http://127.0.0.1:{port}", "doorstep-clips", max_attempts=1, connect_timeout=1
    )
    assert SECRET_ACCESS_KEY not in repr(unreachable)
    with pytest.raises(ClipStoreUnavailable) as down:
        unreachable.size("c1/video.mp4")
    assert "HeadObject of c1/video.mp4" in str(down.value)
    missing_bucket = s3_store(endpoint, "doorstep-no-such-bucket")
    with pytest.raises(ClipStoreUnavailable) as refused:
        missing_bucket.put("c1/video.mp4", [b"x"])
    assert str(refused.value) == "S3 PutObject of c1/video.mp4 failed: NoSuchBucket"
    assert refused.value.status == 503
    for error in (down.value, refused.value):
        assert SECRET_ACCESS_KEY not in f"{error} {error.body()}"


def test_the_start_check_says_whether_the_bucket_is_missing_or_out_of_reach(
    endpoint: str, bucket: str
) -> None:
    s3_store(endpoint, bucket).check()  # there, and these keys may use it
    with pytest.raises(ClipStoreUnavailable) as missing:
        s3_store(endpoint, "doorstep-no-such-bucket").check()
    assert str(missing.value) == (
        f"the clip bucket 'doorstep-no-such-bucket' at {endpoint} does not exist there"
    )
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    down = s3_store(f"http://127.0.0.1:{port}", bucket, max_attempts=1, connect_timeout=1)
    with pytest.raises(ClipStoreUnavailable, match=r"cannot be reached \(EndpointConnectionError"):
        down.check()


def test_serve_stops_before_starting_anything_when_the_bucket_is_missing(
    endpoint: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    environment = {
        "DOORSTEP_CLIPS__STORE": "s3",
        "DOORSTEP_CLIPS__S3_ENDPOINT_URL": endpoint,
        "DOORSTEP_CLIPS__S3_REGION": REGION,
        "DOORSTEP_CLIPS__S3_BUCKET": "doorstep-not-created",
        "DOORSTEP_CLIPS__S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "DOORSTEP_CLIPS__S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(data_dir)], env=environment)
    assert result.exit_code == 1
    assert "the clip bucket 'doorstep-not-created'" in result.output
    assert "does not exist there" in result.output
    assert SECRET_ACCESS_KEY not in result.output and "Traceback" not in result.output
    assert not (data_dir / "broker").exists() and not list(data_dir.glob("*.db"))


def test_part_size_below_the_s3_minimum_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="part_size"):
        s3_store(endpoint, "doorstep-clips", part_size=MIN_PART_SIZE - 1)
    with pytest.raises(ValueError, match="prefix"):
        s3_store(endpoint, "doorstep-clips", prefix="a/../b")


# ---- the vault on the S3 store -------------------------------------------------------


@pytest.fixture
def vault(endpoint: str, bucket: str, tmp_path: Path, home_key: HomeKey) -> ClipVault:
    store = s3_store(endpoint, bucket)
    return ClipVault(store, FileKeyStore(tmp_path / "keys"), home_key, chunk_size=4096)


def test_the_vault_stores_ciphertext_in_the_bucket_and_serves_ranges(
    vault: ClipVault, clip: Clip, endpoint: str, bucket: str
) -> None:
    video, thumbnail = clip.video.read_bytes(), clip.thumbnail.read_bytes()
    stored = vault.archive(clip)
    assert not clip.video.exists() and not clip.thumbnail.exists()
    keys = bucket_keys(endpoint, bucket)
    assert keys == [
        f"{PREFIX}{clip.clip_id}/{part}" for part in ("manifest.json", "thumbnail.jpg", VIDEO)
    ]
    admin = admin_client(endpoint)
    for key in keys:
        data = admin.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert data.startswith(b"DSCLIP01")
        assert b"ftyp" not in data and b"moov" not in data and b"JFIF" not in data
        assert b"entry_id" not in data
    assert vault.clip_ids() == [clip.clip_id]
    assert b"".join(vault.read(clip.clip_id)) == video
    for start, end in [(0, 1), (4095, 4097), (1000, 9000), (len(video) - 10, len(video) + 99)]:
        assert b"".join(vault.read(clip.clip_id, start, end)) == video[start:end]
    assert vault.thumbnail(clip.clip_id) == thumbnail
    assert vault.size(clip.clip_id) == len(video)
    assert vault.manifest(clip.clip_id) == stored


def test_a_deleted_clip_cannot_be_decrypted_from_what_remains_in_the_bucket(
    vault: ClipVault, clip: Clip, endpoint: str, bucket: str, home_key: HomeKey
) -> None:
    vault.archive(clip)
    # What the provider, a bucket backup or a leaked credential might still hold.
    admin = admin_client(endpoint)
    video_key = f"{PREFIX}{clip.clip_id}/{VIDEO}"
    leftover = admin.get_object(Bucket=bucket, Key=video_key)["Body"].read()
    vault.delete(clip.clip_id)
    vault.delete(clip.clip_id)  # idempotent
    assert vault.clip_ids() == []
    assert bucket_keys(endpoint, bucket) == []
    assert vault.keys.ids() == []
    with pytest.raises(ClipKeyDestroyed):
        vault.keys.get(clip.clip_id)
    with pytest.raises(ClipNotFound):
        b"".join(vault.read(clip.clip_id))
    # The home key only ever wrapped the destroyed clip key; it never encrypted video.
    with pytest.raises(ClipIntegrityError):
        ObjectCipher(home_key.secret, f"{clip.clip_id}/{VIDEO}").decrypt_all([leftover])


# ---- settings ------------------------------------------------------------------------


def test_an_s3_store_needs_an_endpoint_and_a_bucket() -> None:
    with pytest.raises(ValidationError, match="DOORSTEP_CLIPS__S3_ENDPOINT_URL") as error:
        ClipSettings(store="s3")
    assert "DOORSTEP_CLIPS__S3_BUCKET" in str(error.value)
    with pytest.raises(ValidationError, match="DOORSTEP_CLIPS__S3_BUCKET"):
        ClipSettings(store="s3", s3_endpoint_url="http://127.0.0.1:9000")
    with pytest.raises(ValidationError, match="both"):
        ClipSettings(
            store="s3",
            s3_endpoint_url="http://127.0.0.1:9000",
            s3_bucket="clips",
            s3_access_key_id="id-only",
        )
    assert ClipSettings().store == "file"


def test_the_environment_selects_the_s3_store_and_keys_stay_local(
    endpoint: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "STORE": "s3",
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": REGION,
        "S3_BUCKET": bucket,
        "S3_PREFIX": "deployment-1/clips",
        "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }.items():
        monkeypatch.setenv(f"DOORSTEP_CLIPS__{name}", value)
    settings = Settings(data_dir=tmp_path / "data")
    assert SECRET_ACCESS_KEY not in repr(settings) + str(settings.model_dump())
    storage = ClipStorage.under(settings.data_dir, settings.clips)
    assert isinstance(storage.store, S3ClipStore)
    assert (storage.store.bucket, storage.store.prefix) == (bucket, PREFIX)
    storage.store.put("c1/video.mp4", [b"x"])
    assert bucket_keys(endpoint, bucket) == [f"{PREFIX}c1/video.mp4"]
    assert (settings.data_dir / "keys" / "clips-master.key").is_file()
    assert not (settings.data_dir / "clips" / "objects").exists()
    assert isinstance(ClipStorage.under(tmp_path / "other").store, FileClipStore)


def _read_all(store: ClipStore, name: str, batch: int) -> bytes:
    size = store.size(name)
    return b"".join(store.read_range(name, offset, batch) for offset in range(0, size, batch))


def _calls(store: S3ClipStore, name: str) -> list[Callable[[], object]]:
    return [
        lambda: store.put(name, [b"x"]),
        lambda: store.size(name),
        lambda: store.read_range(name, 0, 1),
        lambda: store.delete(name),
    ]
