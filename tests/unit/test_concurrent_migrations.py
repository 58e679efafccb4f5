"""Two `serve` processes started at once on one new database: both bring the schema up,
one after the other (`db.migrate`), and neither fails on the other's half-made tables."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from doorstep import db

# Made ready (imports done, engine made), then released together by a line on stdin.
MIGRATE = """
import sys
from doorstep import db
engine = db.make_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
db.migrate(engine, None)
"""


def test_two_processes_migrating_one_new_database_at_once_both_succeed(
    database_url: str,
) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outcomes = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert [child.returncode for child in children] == [0, 0], outcomes
    engine = db.make_engine(database_url)
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert len(versions) == 1
