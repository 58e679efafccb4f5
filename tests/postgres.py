"""Throwaway PostgreSQL databases for the tests, in the cluster `DOORSTEP_TEST_PG_URL`
names (`scripts/test` starts one with `scripts/pg-test-cluster`), and a committed
transaction on either database (`committed`)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest
from sqlalchemy import Engine, create_engine, text

from doorstep.sql import Tx

PG_URL = os.environ.get("DOORSTEP_TEST_PG_URL", "")
T = TypeVar("T")


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


def committed(engine: Engine, job: Callable[[Tx], T]) -> T:
    """Run `job` in a transaction of its own on a raw connection (as the writer runs
    its jobs), commit it and return what it returned; SQLite or PostgreSQL."""
    connection = engine.raw_connection()
    try:
        tx = Tx(connection.driver_connection, engine.dialect.name)
        result = job(tx)
        connection.commit()
        return result
    finally:
        connection.close()
