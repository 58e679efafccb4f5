"""The audit log is append-only in the database and its hash chain shows any tampering."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from doorstep import db
from doorstep.audit import service as audit
from doorstep.audit.models import AuditEvent

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@contextmanager
def _seeded(url: str, count: int = 5) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    with sessions() as session:
        for n in range(count):
            audit.append(
                session,
                at=T0 + timedelta(seconds=n),
                actor="test",
                action="x:y",
                subject=f"s{n}",
                data={"n": n},
            )
        session.commit()
    try:
        yield sessions
    finally:
        engine.dispose()


def test_chain_verifies(database_url: str) -> None:
    with _seeded(database_url) as sessions, sessions() as session:
        report = audit.verify(session)
    assert report.ok and report.records == 5


def test_the_application_cannot_rewrite_or_delete(database_url: str) -> None:
    with _seeded(database_url) as sessions:
        for statement in (update(AuditEvent).values(actor="mallory"), delete(AuditEvent)):
            with sessions() as session, pytest.raises(DBAPIError, match="append-only"):
                session.execute(statement)


def _doorstep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doorstep", *args], capture_output=True, text=True, check=False
    )


def test_verify_names_the_first_broken_link(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with _seeded(f"sqlite:///{data_dir / 'doorstep.db'}", count=6):
        pass
    assert _doorstep("audit", "verify", "--data-dir", str(data_dir)).returncode == 0
    # Someone with the file drops the guard and edits record 3, then deletes record 5.
    with sqlite3.connect(data_dir / "doorstep.db") as raw:
        raw.execute("DROP TRIGGER audit_events_no_update")
        raw.execute("DROP TRIGGER audit_events_no_delete")
        raw.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
        raw.execute("DELETE FROM audit_events WHERE seq = 5")
    result = _doorstep("audit", "verify", "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert "BROKEN at seq 3" in result.stderr


def test_a_deleted_record_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with _seeded(url, count=4) as sessions, sessions() as session:
        session.execute(text("DROP TRIGGER audit_events_no_delete"))
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
        session.commit()
        report = audit.verify(session)
    assert not report.ok and report.broken_seq == 2 and report.problem == "record missing"
