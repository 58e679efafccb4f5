"""Fixtures for the unit tests that need a PostgreSQL database of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from doorstep import db
from postgres import postgres_database


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """An engine on a new PostgreSQL database, migrated (skips without a cluster)."""
    with postgres_database() as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        yield engine
        engine.dispose()
