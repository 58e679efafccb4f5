"""Settings that would put emailed links (password resets, invitations) where others can
read or redirect them are refused before `serve` starts anything, with a line naming the
setting and its variable (never its value); the safe choice is the default."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from doorstep.cli.main import cli
from doorstep.server import warn_of_links_in_clear
from doorstep.settings import NotifySettings, Settings

ALL_ADDRESSES = "0.0.0.0"  # noqa: S104 - the bind under test, never bound here


@pytest.fixture(autouse=True)
def serve_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings these tests expect to be refused must stop `serve` before it runs; should
    they pass, it fails rather than starting a service."""

    def run(_settings: Settings) -> None:
        raise AssertionError("serve would have started")

    monkeypatch.setattr("doorstep.server.serve", run)


def _serve(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(data_dir), *args], env=env)
    assert not (data_dir / "broker").exists(), "something was started"
    assert not isinstance(result.exception, AssertionError), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


# ---- SMTP ---------------------------------------------------------------------------------


def test_mail_to_a_remote_server_goes_over_starttls_by_default() -> None:
    assert NotifySettings(smtp_host="smtp.example.com", smtp_port=587).starttls
    assert NotifySettings(smtp_host="192.0.2.25").starttls
    # A sink on this machine (the tests', the demo's) is spoken to in plain text.
    for local in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert not NotifySettings(smtp_host=local).starttls, local
    assert NotifySettings(smtp_host="127.0.0.1", smtp_starttls=True).starttls


def test_plain_text_mail_to_a_remote_server_must_be_asked_for(tmp_path: Path) -> None:
    password = "smtp-pass-never-shown"
    env = {
        "DOORSTEP_NOTIFY__SMTP_HOST": "smtp.example.com",
        "DOORSTEP_NOTIFY__SMTP_STARTTLS": "false",
        "DOORSTEP_NOTIFY__SMTP_PASSWORD": password,
    }
    code, output = _serve(tmp_path, env)
    assert code == 1
    assert "DOORSTEP_NOTIFY__SMTP_STARTTLS" in output
    assert "DOORSTEP_NOTIFY__SMTP_ALLOW_PLAINTEXT" in output
    assert password not in output
    allowed = NotifySettings(
        smtp_host="smtp.example.com", smtp_starttls=False, smtp_allow_plaintext=True
    )
    assert not allowed.starttls


# ---- the public URL -----------------------------------------------------------------------


def test_serving_beyond_loopback_needs_the_public_url(tmp_path: Path) -> None:
    """Otherwise a reset link would read http://0.0.0.0:8000/... and reach nobody."""
    code, output = _serve(tmp_path, {}, "--host", ALL_ADDRESSES)
    assert code == 1
    assert "the configuration is not valid" in output and "DOORSTEP_PUBLIC_URL" in output
    settings = Settings(http_host=ALL_ADDRESSES, public_url="https://doorstep.example")
    assert settings.resolved_public_url == "https://doorstep.example"
    assert Settings().resolved_public_url == "http://127.0.0.1:8000"  # loopback: as before


def test_production_needs_an_https_public_url(tmp_path: Path) -> None:
    production = {
        "DOORSTEP_ENVIRONMENT": "production",
        "DOORSTEP_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
    }
    for public_url in (None, "http://doorstep.example"):
        env = dict(production, **({"DOORSTEP_PUBLIC_URL": public_url} if public_url else {}))
        code, output = _serve(tmp_path, env)
        assert code == 1, public_url
        assert "production needs DOORSTEP_PUBLIC_URL" in output and "https://" in output
    assert Settings(
        environment="production",
        database_url=production["DOORSTEP_DATABASE_URL"],
        public_url="https://doorstep.example",
    )


@pytest.mark.parametrize("public_url", ["doorstep.example", "ftp://doorstep.example", "https://"])
def test_a_public_url_that_no_link_could_use_is_refused(tmp_path: Path, public_url: str) -> None:
    code, output = _serve(tmp_path, {"DOORSTEP_PUBLIC_URL": public_url})
    assert code == 1
    assert "public_url (DOORSTEP_PUBLIC_URL): public_url must be an absolute" in output


def test_plain_http_beyond_loopback_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="doorstep.server")
    warn_of_links_in_clear(Settings(http_host="127.0.0.1"))
    warn_of_links_in_clear(Settings(http_host=ALL_ADDRESSES, public_url="https://doorstep.example"))
    assert caplog.messages == []
    warn_of_links_in_clear(Settings(http_host=ALL_ADDRESSES, public_url="http://192.168.1.20:8000"))
    [warning] = caplog.messages
    assert "DOORSTEP_PUBLIC_URL is http://" in warning and "in clear" in warning
