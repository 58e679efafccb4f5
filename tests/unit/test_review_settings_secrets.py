"""The settings' secrets (passwords in the database and broker URLs, the SMTP password,
the S3 secret key, the metrics token) are never shown: not by `repr` or `str` of the
settings (a log line of them), nor by the error for a mistake in another setting."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from doorstep.settings import NotifySettings, Settings

SECRETS = {
    "database_url": "postgresql://svc:db-password-1@db.example/doorstep",
    "database_owner_url": "postgresql://owner:owner-password-2@db.example/doorstep",
    "broker_url": "mqtt://service:broker-password-3@broker.example:8883",
    "metrics_token": "metrics-token-4-" + "x" * 32,
}
SMTP_PASSWORD = "smtp-password-5"
S3_SECRET = "s3-secret-6"
NOTIFY = {
    "smtp_host": "mail.example",
    "smtp_username": "doorstep",
    "smtp_password": SMTP_PASSWORD,
}
CLIPS = {
    "store": "s3",
    "s3_endpoint_url": "https://s3.example",
    "s3_bucket": "clips",
    "s3_access_key_id": "AKIDEXAMPLE",
    "s3_secret_access_key": S3_SECRET,
}
PASSWORDS = [
    "db-password-1",
    "owner-password-2",
    "broker-password-3",
    "metrics-token-4",
    SMTP_PASSWORD,
    S3_SECRET,
]


def _shown(text: str) -> list[str]:
    return [secret for secret in PASSWORDS if secret in text]


def test_the_settings_never_show_their_secrets() -> None:
    settings = Settings(**SECRETS, notify=NOTIFY, clips=CLIPS)  # type: ignore[arg-type]
    assert _shown(repr(settings)) == []
    assert _shown(str(settings)) == []
    assert _shown(f"{settings!r} {settings.notify!r} {settings.notify}") == []
    # What uses them still gets them.
    assert settings.resolved_database_url == SECRETS["database_url"]
    assert settings.notify.smtp_password is not None
    assert settings.notify.smtp_password.get_secret_value() == SMTP_PASSWORD


@pytest.mark.parametrize(
    "mistake",
    [
        {"http_port": "eighty"},  # a field next to them
        {"notify": {**NOTIFY, "smtp_port": "twenty-five"}},
        {"clips": {**CLIPS, "s3_region": ["not", "a", "string"]}},
        # Checks over the whole model: pydantic shows the whole input by default.
        {"database_owner_url": "postgresql://svc:owner-password-2@db.example/doorstep"},
        {"environment": "production"},
        {"notify": {**NOTIFY, "smtp_starttls": False}},
        {"clips": {**CLIPS, "s3_bucket": None}},
    ],
)
def test_an_error_in_the_settings_does_not_show_their_secrets(mistake: dict[str, Any]) -> None:
    values: dict[str, Any] = {**SECRETS, "notify": NOTIFY, "clips": CLIPS, **mistake}
    with pytest.raises(ValidationError) as raised:
        Settings(**values)
    assert _shown(str(raised.value)) == []


def test_an_error_in_the_mail_settings_alone_does_not_show_the_password() -> None:
    with pytest.raises(ValidationError) as raised:
        NotifySettings(**NOTIFY, smtp_starttls=False)  # type: ignore[arg-type]
    assert SMTP_PASSWORD not in str(raised.value)
