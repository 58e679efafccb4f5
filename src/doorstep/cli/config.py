"""The commands' settings: `load_settings`, with a configuration mistake said as one line
per problem (which setting, which environment variable, what is wrong) instead of a
traceback. A value is never echoed: it may be a password in a database URL."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError
from sqlalchemy import Engine

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


def open_database(config: settings.Settings) -> Engine:
    """The service's database engine, its schema migrated (`db.migrate`); a role setup
    that cannot work is a `click.ClickException` saying why."""
    engine = db.make_engine(config.resolved_database_url)
    try:
        db.migrate(engine, config.database_owner_url)
    except db.RoleSetupError as exc:
        engine.dispose()
        raise click.ClickException(str(exc)) from None
    return engine


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
