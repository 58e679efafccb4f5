"""The operator's commands fail as commands: exit 1 with one line saying what is wrong
(no traceback, no secret), and never a success on the wrong database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from doorstep.broker.supervisor import free_port
from doorstep.cli.main import cli

PASSWORD = "correct horse battery"


def _run(*args: str, password: str | None = None) -> Result:
    given = f"{password}\n{password}\n" if password is not None else None
    return CliRunner().invoke(cli, list(args), input=given)


def _failed(result: Result, *expected: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
    for text in expected:
        assert text in result.output, result.output


def test_an_operator_email_already_taken_is_said_in_one_line(tmp_path: Path) -> None:
    args = ("users", "create-operator", "--data-dir", str(tmp_path), "--email", "op@x.test")
    assert _run(*args, password=PASSWORD).exit_code == 0
    _failed(_run(*args, password=PASSWORD), "an account with this email already exists")


def test_an_operator_password_follows_the_sign_up_rules(tmp_path: Path) -> None:
    args = ("users", "create-operator", "--data-dir", str(tmp_path), "--email", "op@x.test")
    _failed(_run(*args, password="short"), "the password is not accepted")
    assert not (tmp_path / "doorstep.db").exists()


@pytest.mark.parametrize(
    "command", [("audit", "verify"), ("clips", "scan"), ("clips", "expire")], ids=" ".join
)
@pytest.mark.parametrize("exists", [True, False], ids=["empty dir", "no dir"])
def test_a_data_dir_without_a_database_is_not_a_new_empty_one(
    tmp_path: Path, command: tuple[str, str], exists: bool
) -> None:
    """A mistyped --data-dir must not answer "audit chain intact: 0 records"."""
    data_dir = tmp_path / "typo"
    if exists:
        data_dir.mkdir()
    _failed(_run(*command, "--data-dir", str(data_dir)), "no database at", "--data-dir")
    assert not (data_dir / "doorstep.db").exists()


@pytest.mark.parametrize(
    "command", [("audit", "verify"), ("serve", "--data-dir")], ids=["audit", "serve"]
)
def test_a_database_that_cannot_be_reached_is_said_without_its_password(
    tmp_path: Path, command: tuple[str, str]
) -> None:
    secret = "pg-secret-never-shown"
    url = f"postgresql://doorstep:{secret}@127.0.0.1:{free_port()}/doorstep"
    args = [*command, str(tmp_path)] if command[0] == "serve" else [*command]
    result = _run(*args, "--database-url", url)
    _failed(result, "cannot open the database (DOORSTEP_DATABASE_URL)")
    assert secret not in result.output
    assert not (tmp_path / "broker").exists(), "the broker was started"
