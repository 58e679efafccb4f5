"""A mistake in the configuration stops a command at once with one line per problem:
which setting, which environment variable, what is wrong; no traceback, nothing
started, and no value echoed (a database URL may hold a password)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from doorstep.cli.main import cli


def _serve(tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(data_dir)], env=env)
    assert not (data_dir / "broker").exists(), "something was started"
    return result.exit_code, result.output


def test_an_s3_store_without_its_endpoint_and_bucket_is_named(tmp_path: Path) -> None:
    code, output = _serve(tmp_path, {"DOORSTEP_CLIPS__STORE": "s3"})
    assert code == 1
    assert "the configuration is not valid" in output
    assert "DOORSTEP_CLIPS__S3_ENDPOINT_URL" in output and "DOORSTEP_CLIPS__S3_BUCKET" in output
    assert "Traceback" not in output


def test_a_bad_value_names_its_variable_and_never_echoes_it(tmp_path: Path) -> None:
    secret = "hunter2-not-a-number"
    code, output = _serve(
        tmp_path, {"DOORSTEP_ENTRY__GRANT_TTL_SECONDS": secret, "DOORSTEP_HTTP_PORT": "http"}
    )
    assert code == 1
    assert "entry.grant_ttl_seconds (DOORSTEP_ENTRY__GRANT_TTL_SECONDS):" in output
    assert "http_port (DOORSTEP_HTTP_PORT):" in output
    assert secret not in output and "Traceback" not in output


def test_an_issuer_key_file_that_is_no_key_is_named_in_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "data" / "keys"
    keys.mkdir(parents=True)
    (keys / "issuer-k1.pem").write_text("not a key\n")
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "the issuer keys cannot be used" in result.output
    assert "issuer-k1.pem" in result.output
    assert "Traceback" not in result.output


def test_a_broker_url_that_cannot_be_used_is_one_line_without_its_password(
    tmp_path: Path,
) -> None:
    code, output = _serve(tmp_path, {"DOORSTEP_BROKER_URL": "http://hub:hunter2@broker:1883"})
    assert code == 1
    assert "broker URL must look like" in output
    assert "hunter2" not in output and "Traceback" not in output
