"""A `ClipStore` in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2, ...), via boto3.

    put         PutObject for an object that fits in one part; otherwise a multipart
                upload of `part_size` parts (>= 5 MiB, the S3 minimum, except the last),
                aborted on any failure, so a partial object is never visible
    size        HeadObject (404 -> ClipNotFound)
    read_range  GetObject with `Range: bytes=a-b`; 416 (offset at or past the end) -> b""
    delete      DeleteObject (S3 answers 204 for a missing key too: idempotent)
    list        ListObjectsV2, page by page, names relative to the key prefix, sorted

Object names are checked with the rule of `FileClipStore` (parts matching `NAME_PART`,
joined by "/") before any request; the key is `<prefix><name>`.

Only ciphertext reaches the bucket, and the keys that open it stay on the service's
filesystem (`clips.storage`), so the bucket alone opens nothing. On a versioned bucket
a deleted clip leaves old versions behind; they stay unreadable because `ClipVault`
destroys the clip key first. A multipart upload whose abort itself fails (the endpoint
went away) is left pending: give the bucket a lifecycle rule that aborts incomplete
multipart uploads after a day.

Requests have bounded connect and read timeouts and retry with botocore's "standard"
mode (exponential backoff with jitter on throttling, 5xx and connection errors).
botocore's default request checksums stay on: the endpoint verifies each part, so a
corrupted upload fails instead of replacing the clip's only copy (the plaintext is
deleted once it is stored). Errors are translated into `ClipStoreUnavailable` with the
operation, the object name and the S3 error code; credentials never appear in messages.

boto3 ships without type information: the `Any` of its client stays inside this module.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from doorstep.video.errors import ClipNotFound, ClipStoreUnavailable, VideoError
from doorstep.video.storage import NAME_PART

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part, except the last one
DEFAULT_PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000  # S3's limit: with 8 MiB parts, objects up to ~78 GiB
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_PAST_END = frozenset({"416", "InvalidRange"})


class S3ClipStore:
    """A `ClipStore` over one bucket (and an optional key prefix) of an S3 endpoint."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: str = "path",
        part_size: int = DEFAULT_PART_SIZE,
        page_size: int = 1000,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 5,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self._part_size = part_size
        self._page_size = page_size
        config = Config(
            region_name=region,
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": addressing_style},
        )
        # A session of its own: boto3's default session is shared and not thread-safe;
        # the client is, and is used from the request threads and the background jobs.
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)

    def __repr__(self) -> str:  # never the credentials
        return f"S3ClipStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def check(self) -> None:
        """The bucket exists and these credentials may use it (HeadBucket), or
        `ClipStoreUnavailable` saying what is wrong: no such bucket, keys refused, or the
        endpoint out of reach."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            code = _error_code(exc) or type(exc).__name__
            if code in _MISSING or code == "NoSuchBucket":
                problem = "does not exist there"
            elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                problem = f"refuses these credentials ({code})"
            else:
                problem = f"cannot be reached ({code})"
            endpoint = self._client.meta.endpoint_url
            raise ClipStoreUnavailable(
                f"the clip bucket {self.bucket!r} at {endpoint} {problem}"
            ) from exc

    def put(self, name: str, chunks: Iterable[bytes]) -> int:
        key = self._key(name)
        parts = _parts(chunks, self._part_size)
        first = next(parts)
        second = next(parts, None)
        if second is None:
            self._call("PutObject", name, self._client.put_object, Key=key, Body=first)
            return len(first)
        return self._put_multipart(name, key, itertools.chain((first, second), parts))

    def size(self, name: str) -> int:
        key = self._key(name)
        head = self._call("HeadObject", name, self._client.head_object, Key=key)
        return int(head["ContentLength"])

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        key = self._key(name)
        if offset < 0 or length < 0:
            raise VideoError(f"invalid range {offset}+{length} of {name}")
        if length == 0:
            self.size(name)  # ClipNotFound for a missing object, as a file store does
            return b""
        byte_range = f"bytes={offset}-{offset + length - 1}"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)
        except ClientError as exc:
            if _error_code(exc) in _PAST_END:
                return b""
            raise _translated("GetObject", name, exc) from exc
        except BotoCoreError as exc:
            raise _translated("GetObject", name, exc) from exc
        body = response["Body"]
        try:
            data: bytes = body.read()
        except BotoCoreError as exc:
            raise ClipStoreUnavailable(f"S3 GetObject of {name} failed mid-body") from exc
        finally:
            body.close()
        if "ContentRange" not in response:  # an endpoint that ignored the Range header
            data = data[offset : offset + length]
        return data

    def delete(self, name: str) -> None:
        key = self._key(name)
        try:
            self._call("DeleteObject", name, self._client.delete_object, Key=key)
        except ClipNotFound:
            return  # some S3-compatible endpoints answer 404 instead of 204

    def list(self, prefix: str = "") -> list[str]:
        names: list[str] = []
        request: dict[str, Any] = {"Prefix": self.prefix + prefix, "MaxKeys": self._page_size}
        while True:
            page = self._call("ListObjectsV2", prefix, self._client.list_objects_v2, **request)
            for entry in page.get("Contents", ()):
                name = str(entry["Key"])[len(self.prefix) :]
                if _valid(name):  # anything else under the prefix is not ours
                    names.append(name)
            if not page.get("IsTruncated"):
                return sorted(names)
            request["ContinuationToken"] = page["NextContinuationToken"]

    def _put_multipart(self, name: str, key: str, parts: Iterator[bytes]) -> int:
        upload = self._call(
            "CreateMultipartUpload", name, self._client.create_multipart_upload, Key=key
        )
        upload_id = upload["UploadId"]
        try:
            done: list[dict[str, Any]] = []
            written = 0
            for number, part in enumerate(parts, start=1):
                if number > MAX_PARTS:
                    raise VideoError(f"{name} needs more than {MAX_PARTS} parts")
                answer = self._call(
                    "UploadPart", name, self._client.upload_part,
                    Key=key, UploadId=upload_id, PartNumber=number, Body=part,
                )  # fmt: skip
                done.append(_completed_part(number, answer))
                written += len(part)
            self._call(
                "CompleteMultipartUpload", name, self._client.complete_multipart_upload,
                Key=key, UploadId=upload_id, MultipartUpload={"Parts": done},
            )  # fmt: skip
        except BaseException:
            self._abort(name, key, upload_id)
            raise
        return written

    def _abort(self, name: str, key: str, upload_id: str) -> None:
        try:
            self._call(
                "AbortMultipartUpload", name, self._client.abort_multipart_upload,
                Key=key, UploadId=upload_id,
            )  # fmt: skip
        except (ClipStoreUnavailable, ClipNotFound) as exc:
            # The original failure is what the caller needs; this one leaves the upload
            # to the bucket's lifecycle rule.
            log.warning("could not abort the multipart upload of %s: %s", name, exc)

    def _call(self, operation: str, name: str, method: Any, **arguments: Any) -> Any:
        """One request on the bucket, its errors translated at this boundary."""
        try:
            return method(Bucket=self.bucket, **arguments)
        except (ClientError, BotoCoreError) as exc:
            raise _translated(operation, name, exc) from exc

    def _key(self, name: str) -> str:
        if not _valid(name):
            raise VideoError(f"invalid object name {name!r}")
        return self.prefix + name


def _valid(name: str) -> bool:
    return all(NAME_PART.fullmatch(part) for part in name.split("/"))


def _normalise_prefix(prefix: str) -> str:
    """ "" or "a/b/" from "a/b", "/a/b/" or "a/b/"; each part a valid name part."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    if not _valid(stripped):
        raise ValueError(f"invalid key prefix {prefix!r}")
    return stripped + "/"


def _parts(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """`chunks` regrouped into blocks of exactly `size` bytes, then the rest; at least
    one block (empty for an empty stream), never an empty block after a full one."""
    pending = bytearray()
    full = False
    for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
            full = True
    if pending or not full:
        yield bytes(pending)


def _completed_part(number: int, answer: Any) -> dict[str, Any]:
    """What CompleteMultipartUpload needs of a part: its number, ETag and checksum."""
    part: dict[str, Any] = {"PartNumber": number, "ETag": answer["ETag"]}
    for field in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1"):
        if field in answer:
            part[field] = answer[field]
    return part


def _translated(operation: str, name: str, exc: Exception) -> ClipNotFound | ClipStoreUnavailable:
    """A botocore error as ours: the S3 error code (or the exception's class name for a
    connection or timeout error), never botocore's message or the request's headers."""
    code = _error_code(exc) or type(exc).__name__
    if code in _MISSING:
        return ClipNotFound(f"no stored object {name}")
    return ClipStoreUnavailable(f"S3 {operation} of {name} failed: {code}")


def _error_code(exc: Exception) -> str:
    if not isinstance(exc, ClientError):
        return ""
    response: Any = exc.response
    return str(response.get("Error", {}).get("Code", ""))
