"""A real S3 HTTP endpoint on loopback for the clip store tests.

No S3 exists on this machine, so moto's server stands in for it: it speaks the S3 REST
protocol (SigV4, ranges, multipart, ListObjectsV2 paging) over real HTTP, and the store
under test talks to it through boto3 exactly as it would to MinIO or AWS. moto keeps its
buckets in process-wide memory: each test takes a bucket of its own (`new_bucket`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

ACCESS_KEY_ID = "doorstep-test"
SECRET_ACCESS_KEY = "doorstep-test-secret-key-0123456789"
REGION = "us-east-1"


@contextmanager
def s3_endpoint() -> Iterator[str]:
    """Serve S3 on a free loopback port; yields its URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request else
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def admin_client(endpoint: str) -> Any:
    """A plain boto3 client, to look at the bucket from outside the store."""
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY
    )
    return session.client("s3", endpoint_url=endpoint, region_name=REGION)


def new_bucket(endpoint: str) -> str:
    name = f"doorstep-clips-{uuid.uuid4().hex[:12]}"
    admin_client(endpoint).create_bucket(Bucket=name)
    return name


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    pages = admin_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", ()))
