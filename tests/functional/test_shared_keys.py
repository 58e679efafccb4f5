"""Every `serve` of one database uses the same `<data dir>/keys/` (`doorstep.keycheck`):
one with keys of its own stops with one line before it starts anything; one with a copy
of the keys starts, and so does one whose issuer keys were rotated."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from doorstep.access.keys import SIGNING_FILE
from doorstep.app import create_app
from doorstep.cli.main import cli
from doorstep.keycheck import SHARED_KEY_FILES
from doorstep.settings import Settings

# A broker URL `serve` refuses once the keys are checked: it stops there, having
# started nothing, and says so.
PAST_THE_KEYS = "broker URL must look like"


def _serve(data_dir: Path, database_url: str) -> Result:
    environment = {"DOORSTEP_DATABASE_URL": database_url, "DOORSTEP_BROKER_URL": "not-a-url"}
    return CliRunner().invoke(cli, ["serve", "--data-dir", str(data_dir)], env=environment)


def test_serve_with_other_keys_than_the_database_knows_stops_with_one_line(
    tmp_path: Path, database_url: str
) -> None:
    first = _serve(tmp_path / "a", database_url)
    assert PAST_THE_KEYS in first.output, first.output

    other = _serve(tmp_path / "b", database_url)

    assert other.exit_code == 1, other.output
    assert "are not the ones the other `serve` processes of this database use" in other.output
    assert PAST_THE_KEYS not in other.output and "Traceback" not in other.output
    assert len(other.output.strip().splitlines()) == 1


def test_serve_with_a_copy_of_the_keys_or_rotated_issuer_keys_starts(
    tmp_path: Path, database_url: str
) -> None:
    assert PAST_THE_KEYS in _serve(tmp_path / "a", database_url).output
    shutil.copytree(tmp_path / "a" / "keys", tmp_path / "c" / "keys")
    rotated = CliRunner().invoke(
        cli, ["keys", "add", "--data-dir", str(tmp_path / "a"), "--database-url", database_url]
    )
    assert rotated.exit_code == 0, rotated.output

    for data_dir in (tmp_path / "c", tmp_path / "a"):
        result = _serve(data_dir, database_url)
        assert PAST_THE_KEYS in result.output, result.output


def test_every_key_the_service_makes_but_the_issuer_keys_is_fingerprinted(
    tmp_path: Path,
) -> None:
    create_app(Settings(data_dir=tmp_path), broker=None)
    made = {path.name for path in (tmp_path / "keys").iterdir()}
    issuer = {name for name in made if name.startswith("issuer-")} | {SIGNING_FILE}
    assert made - issuer == set(SHARED_KEY_FILES)
