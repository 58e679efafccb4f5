"""`doorstep keys`: adding a key never switches the signer; what cannot be done is said in
one line (exit 1) and changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from doorstep.access import keys as issuer_keys
from doorstep.cli.config import load_settings, open_database
from doorstep.cli.main import cli


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A service's data directory with its database and its first issuer key."""
    open_database(load_settings(data_dir=tmp_path), create=True).dispose()
    issuer_keys.load_or_create(tmp_path / "keys")
    return tmp_path


def _keys(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["keys", args[0], "--data-dir", str(data_dir), *args[1:]])


def _failed(result: Result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and expected in result.output, result.output


def _files(data_dir: Path) -> list[str]:
    return sorted(path.name for path in (data_dir / "keys").iterdir())


def test_adding_a_key_publishes_it_but_does_not_switch_the_signer(data_dir: Path) -> None:
    first = issuer_keys.load_or_create(data_dir / "keys").signer.kid

    assert _keys(data_dir, "add").exit_code == 0

    keys = issuer_keys.load_or_create(data_dir / "keys")
    assert keys.signer.kid == first
    assert len(keys.public) == 2 and first in keys.public


def test_a_data_dir_of_the_previous_release_keeps_its_newest_key_signing(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    older = issuer_keys.load_or_create(directory).signer.kid
    (directory / issuer_keys.SIGNING_FILE).unlink()  # the previous release wrote none
    newer = issuer_keys.add(directory)
    os.utime(directory / f"issuer-{older}.pem", (1, 1))
    (directory / issuer_keys.SIGNING_FILE).unlink()

    assert issuer_keys.load_or_create(directory).signer.kid == newer
    assert (directory / issuer_keys.SIGNING_FILE).read_text() == newer


@pytest.mark.parametrize("command", ["use", "retire"])
def test_an_unknown_kid_is_refused(data_dir: Path, command: str) -> None:
    before = _files(data_dir)

    _failed(_keys(data_dir, command, "0123456789ab"), "no issuer key '0123456789ab'")

    assert _files(data_dir) == before


def test_the_signing_key_cannot_be_retired(data_dir: Path) -> None:
    signing = issuer_keys.load_or_create(data_dir / "keys").signer.kid
    assert _keys(data_dir, "add").exit_code == 0
    before = _files(data_dir)

    _failed(_keys(data_dir, "retire", signing), "is the signing key")

    assert _files(data_dir) == before


def test_a_key_the_running_service_signs_with_cannot_be_retired(data_dir: Path) -> None:
    directory = data_dir / "keys"
    running = issuer_keys.load_or_create(directory)
    issuer_keys.record_published(directory, running, {})  # what `serve` does at start
    newer = issuer_keys.add(directory)
    issuer_keys.use(directory, newer)  # no restart since

    _failed(_keys(data_dir, "retire", running.signer.kid), "still signs with")

    assert (directory / f"issuer-{running.signer.kid}.pem").exists()


def test_a_key_not_published_yet_cannot_be_used(data_dir: Path) -> None:
    directory = data_dir / "keys"
    signing = issuer_keys.load_or_create(directory).signer.kid
    added = issuer_keys.add(directory)

    # No hub is enrolled; but `serve` has not published the key: it would not be trusted.
    result = _keys(data_dir, "use", added)

    _failed(result, "not been published yet")
    assert issuer_keys.load_or_create(directory).signer.kid == signing


def test_a_retired_key_is_kept_out_of_use_not_destroyed(data_dir: Path) -> None:
    directory = data_dir / "keys"
    old = issuer_keys.load_or_create(directory).signer.kid
    newer = issuer_keys.add(directory)
    issuer_keys.use(directory, newer)
    issuer_keys.record_published(directory, issuer_keys.load_or_create(directory), {})
    pem = (directory / f"issuer-{old}.pem").read_bytes()

    result = _keys(data_dir, "retire", old)

    assert result.exit_code == 0, result.output
    assert set(issuer_keys.load_or_create(directory).public) == {newer}
    kept = directory / "retired" / f"issuer-{old}.pem"
    assert f"kept in {kept}" in result.output
    assert kept.read_bytes() == pem
    assert kept.stat().st_mode & 0o777 == 0o600
    assert (directory / "retired").stat().st_mode & 0o077 == 0
    assert old not in _keys(data_dir, "list").output
