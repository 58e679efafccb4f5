"""A database error names the statement, never its parameters: such errors reach the
service's log (`app.UnexpectedErrors`), and the parameters are token digests, emails
and password hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from doorstep import db

SECRET = "token-digest-4f1c9a"


def _failing_statement(engine: Engine) -> str:
    with engine.connect() as connection, pytest.raises(DBAPIError) as raised:
        connection.execute(text("SELECT * FROM no_such_table WHERE id = :id"), {"id": SECRET})
    return str(raised.value)


def test_a_sqlite_error_keeps_its_parameters_to_itself(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'doorstep.db'}")
    try:
        message = _failing_statement(engine)
    finally:
        engine.dispose()
    assert "no_such_table" in message  # still says what failed
    assert SECRET not in message


def test_a_postgresql_error_keeps_its_parameters_to_itself(pg_engine: Engine) -> None:
    message = _failing_statement(pg_engine)
    assert "no_such_table" in message
    assert SECRET not in message
