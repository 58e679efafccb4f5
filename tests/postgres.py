"""Throwaway PostgreSQL databases for the tests, in the cluster `DOORSTEP_TEST_PG_URL`
names (`scripts/test` starts one with `scripts/pg-test-cluster`)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("DOORSTEP_TEST_PG_URL", "")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database owned by the cluster's test role; its URL. Skips the test
    without a cluster (fails it when `DOORSTEP_REQUIRE_PG` says one is required)."""
    if not PG_URL:
        if os.environ.get("DOORSTEP_REQUIRE_PG"):
            pytest.fail("DOORSTEP_TEST_PG_URL is not set but PostgreSQL tests are required")
        pytest.skip("DOORSTEP_TEST_PG_URL is not set (scripts/test sets it)")
    name = f"test_{secrets.token_hex(6)}"
    admin = create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
        # FORCE ends the test's leftover connections (all the test role's own; the
        # throwaway cluster runs without autovacuum, whose workers only a superuser may
        # end: see scripts/pg-test-cluster).
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
