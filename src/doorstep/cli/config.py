"""The commands' settings: `load_settings`, with a configuration mistake said as one line
per problem (which setting, which environment variable, what is wrong) instead of a
traceback. A value is never echoed: it may be a password in a database URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from doorstep import db, settings

ENV_PREFIX = "DOORSTEP_"


def load_settings(**overrides: Any) -> settings.Settings:
    """`doorstep.settings.load_settings`, or a `click.ClickException` listing what is
    wrong (the command exits 1 with it, and nothing has started)."""
    try:
        return settings.load_settings(**overrides)
    except ValidationError as exc:
        problems = "\n".join(f"  {problem}" for problem in describe(exc))
        raise click.ClickException(f"the configuration is not valid:\n{problems}") from None


def open_database(config: settings.Settings, *, create: bool = False) -> Engine:
    """The service's database engine, its schema migrated (`db.migrate`). A SQLite file
    that is not there is created only with `create` (else a mistyped data directory would
    be a new, empty database: "audit chain intact: 0 records"). A database that cannot be
    opened, or a role setup that cannot work, is a `click.ClickException` saying why."""
    url = make_url(config.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise click.ClickException(
                f"no database at {path}: check --data-dir (DOORSTEP_DATA_DIR) or "
                "--database-url (DOORSTEP_DATABASE_URL)"
            )
    engine = db.make_engine(config.resolved_database_url)
    try:
        db.migrate(engine, config.database_owner_url)
    except db.RoleSetupError as exc:
        engine.dispose()
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        engine.dispose()
        raise click.ClickException(cannot_open(exc)) from None
    return engine


def cannot_open(error: OperationalError) -> str:
    """The driver's own reason (its messages name the server and the user, never the
    password), without SQLAlchemy's statement and parameters."""
    reason = str(error.orig).strip() or type(error.orig).__name__
    return f"cannot open the database (DOORSTEP_DATABASE_URL): {reason}"


def describe(error: ValidationError) -> list[str]:
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        path = [str(part) for part in problem["loc"]]
        message = str(problem["msg"]).removeprefix("Value error, ")
        if not path:
            lines.append(message)
            continue
        variable = ENV_PREFIX + "__".join(path).upper()
        lines.append(f"{'.'.join(path)} ({variable}): {message}")
    return lines
