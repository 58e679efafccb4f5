"""PostgreSQL with two roles (`database_owner_url`): the owner migrates the schema, and the
service's own role may read and write what the service needs but cannot change or delete
the audit log, nor drop the triggers that guard it (DESIGN principle 5). A whole delivery
runs as that role."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from doorstep import db, demo
from doorstep.audit.service import append, verify
from doorstep.cli.main import cli
from doorstep.settings import Settings
from postgres import postgres_database

INSUFFICIENT_PRIVILEGE = "42501"


def _engine(url: str) -> Engine:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


@contextmanager
def _login_role(owner_url: str) -> Iterator[str]:
    """A login role of its own (the test cluster's role may create roles) and its URL to
    the owner's database; its privileges there and the role are dropped after."""
    role, password = f"svc_{secrets.token_hex(4)}", secrets.token_hex(8)
    owner = _engine(owner_url)
    with owner.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
    url = make_url(owner_url).set(username=role, password=password)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        itself = _engine(url.render_as_string(hide_password=False))
        with itself.begin() as connection:  # what it owns and was granted here
            connection.execute(text(f"DROP OWNED BY {role}"))
        itself.dispose()
        with owner.begin() as connection:  # what the owner granted it
            for what in ("ALL TABLES IN SCHEMA public", "ALL SEQUENCES IN SCHEMA public"):
                connection.execute(text(f"REVOKE ALL ON {what} FROM {role}"))
            connection.execute(text(f"REVOKE ALL ON SCHEMA public FROM {role}"))
            connection.execute(text(f"DROP ROLE {role}"))
        owner.dispose()


@contextmanager
def _service_database() -> Iterator[tuple[str, str]]:
    """(owner URL, service URL) of a new database, migrated by its owner, who granted the
    service's role its share (`db.migrate` with `database_owner_url`)."""
    with postgres_database() as owner_url, _login_role(owner_url) as service_url:
        service = db.make_engine(service_url)
        db.migrate(service, owner_url)
        service.dispose()
        yield owner_url, service_url


@pytest.fixture
def database_url() -> Iterator[str]:
    """This module's service (the `live` fixture and the world on it) logs in as the
    least-privileged role; the schema is already migrated when it starts."""
    with _service_database() as (_owner_url, service_url):
        yield service_url


def _refused(engine: Engine, statement: str) -> Any:
    with pytest.raises(ProgrammingError) as refused, engine.begin() as connection:
        connection.execute(text(statement))
    return refused.value.orig


def test_the_service_role_appends_to_the_audit_log_but_cannot_rewrite_it() -> None:
    with _service_database() as (_owner_url, service_url):
        service = db.make_engine(service_url)
        sessions = db.make_session_factory(service)
        with sessions() as session:
            append(
                session, at=datetime.now(UTC), actor="test", action="test:appended", subject="s1"
            )
            session.commit()

        for statement in (
            "UPDATE audit_events SET actor = 'someone else'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "ALTER TABLE audit_events DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_events_no_change ON audit_events",
            "DROP TABLE audit_events",
            "UPDATE alembic_version SET version_num = '0001'",
        ):
            error = _refused(service, statement)
            assert getattr(error, "sqlstate", None) == INSUFFICIENT_PRIVILEGE, (statement, error)

        with sessions() as session:
            report = verify(session)
            assert report.ok and report.records == 1
        service.dispose()


def test_migrate_refuses_a_schema_the_service_role_owns() -> None:
    """A service role that owns the tables could drop the audit log's triggers: say so,
    and what to do, rather than grant and pretend."""
    with postgres_database() as owner_url, _login_role(owner_url) as service_url:
        owner = _engine(owner_url)
        service = db.make_engine(service_url)
        role = service.url.username
        with owner.begin() as connection:
            connection.execute(text(f"GRANT CREATE ON SCHEMA public TO {role}"))
        db.migrate(service, None)  # the schema made by the service's role itself

        with pytest.raises(db.RoleSetupError, match=f"REASSIGN OWNED BY {role}"):
            db.migrate(service, owner_url)

        service.dispose()
        owner.dispose()


def test_migrate_names_a_service_role_that_does_not_exist() -> None:
    with postgres_database() as owner_url:
        missing = make_url(owner_url).set(username="nobody_here", password="x")
        service = db.make_engine(missing.render_as_string(hide_password=False))
        with pytest.raises(db.RoleSetupError, match="'nobody_here' of database_url does not"):
            db.migrate(service, owner_url)
        service.dispose()


def test_serve_stops_before_starting_anything_when_the_roles_cannot_work(
    tmp_path: Path,
) -> None:
    with postgres_database() as owner_url:
        missing = make_url(owner_url).set(username="nobody_here", password="not-shown-1")
        environment = {
            "DOORSTEP_DATABASE_URL": missing.render_as_string(hide_password=False),
            "DOORSTEP_DATABASE_OWNER_URL": owner_url,
        }
        result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path)], env=environment)
    assert result.exit_code == 1, result.output
    assert "the role 'nobody_here' of database_url does not exist" in result.output
    assert "not-shown-1" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "broker").exists()


@pytest.mark.parametrize(
    ("service", "owner", "problem"),
    [
        ("sqlite:///x.db", "postgresql://o@h/d", "is for PostgreSQL"),
        ("postgresql://s@h/d", "postgresql://o@h/other", "same server and database"),
        ("postgresql://s@h/d", "postgresql://s:pw@h/d", "another role"),
    ],
)
def test_settings_refuse_an_owner_url_that_cannot_work(
    service: str, owner: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Settings(database_url=service, database_owner_url=owner)


def test_a_delivery_end_to_end_as_the_service_role(live: Any, world: demo.World) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-ROLE-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-ROLE-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"
    with live.sessions() as session:
        assert verify(session).ok
    assert live.settings.database_url is not None
    assert str(make_url(live.settings.database_url).username).startswith("svc_")
