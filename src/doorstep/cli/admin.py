"""Operator commands that work on the database directly: audit verification, accounts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from doorstep import db
from doorstep.cli.config import load_settings, open_database


def _sessions(
    data_dir: Path | None, database_url: str | None, *, create: bool = False
) -> sessionmaker[Session]:
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    return db.make_session_factory(open_database(settings, create=create))


_data_dir = click.option("--data-dir", type=click.Path(path_type=Path))
_database = click.option("--database-url")


@click.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command()
@_data_dir
@_database
def verify(data_dir: Path | None, database_url: str | None) -> None:
    """Recompute the audit chain; exit 1 and name the first broken link if any."""
    from doorstep.audit.service import verify as verify_chain

    with _sessions(data_dir, database_url)() as session:
        # One snapshot, read beside the running service without holding up its writers.
        db.read_only(session)
        report = verify_chain(session)
    if report.ok:
        click.echo(f"audit chain intact: {report.records} records")
        return
    click.echo(
        f"audit chain BROKEN at seq {report.broken_seq}: {report.problem} "
        f"({report.records} records read)",
        err=True,
    )
    raise SystemExit(1)


@click.group()
def users() -> None:
    """Accounts."""


@users.command("create-operator")
@_data_dir
@_database
@click.option("--email", required=True)
@click.option("--name", default="Operator", show_default=True)
@click.password_option(confirmation_prompt=True)
def create_operator(
    data_dir: Path | None, database_url: str | None, email: str, name: str, password: str
) -> None:
    """Create an operator account (operators register carriers); the password follows
    the sign-up rules. On a new data directory this creates the database."""
    from doorstep.accounts.models import Role
    from doorstep.accounts.schemas import NewPassword
    from doorstep.accounts.service import create_user
    from doorstep.errors import DoorstepError

    try:
        NewPassword(password=password)
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_input=False)[0]["msg"]
        raise click.ClickException(f"the password is not accepted: {problem}") from None
    with _sessions(data_dir, database_url, create=True)() as session:
        try:
            user = create_user(
                session,
                email=email,
                name=name,
                password=password,
                role=Role.OPERATOR,
                now=datetime.now(UTC),
                actor="cli",
            )
        except DoorstepError as exc:  # the email is taken
            raise click.ClickException(exc.message) from None
        session.commit()
    click.echo(f"operator {user.id} created")
