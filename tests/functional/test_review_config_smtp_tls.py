"""Resident mail over STARTTLS: the mail server's certificate is checked (an emailed
password-reset or invitation link must not be readable by whoever sits on the path), on
the live service with a real aiosmtpd server that offers STARTTLS on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from doorstep.broker.supervisor import free_port
from doorstep.notify.models import OutboxMessage
from doorstep.settings import NotifySettings
from polling import poll

PASSWORD = "correct horse battery"
CHANGED = "Your Doorstep password was changed"


class Mailbox:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.subjects.append(str(message_from_bytes(envelope.content)["Subject"]))
        return "250 OK"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no system CA vouches for, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.doorstep.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    directory = tmp_path / "tls"
    directory.mkdir()
    return _self_signed(directory)[0]


@pytest.fixture
def tls_mailbox(certificate: Path) -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server that takes mail only after STARTTLS, with `certificate`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, certificate.with_suffix(".key"))
    box = Mailbox()
    port = free_port()
    controller = Controller(
        box, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def notify_settings(tls_mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(
        smtp_host="127.0.0.1", smtp_port=tls_mailbox[1], smtp_starttls=True, poll_seconds=0.1
    )


def _password_changed(live: Any, email: str) -> None:
    """A resident changes their password; the service mails them that it did."""
    body = {"email": email, "name": "Pat", "password": PASSWORD}
    assert httpx.post(f"{live.url}/v1/residents", json=body, timeout=30).status_code == 201
    form = {"grant_type": "password", "username": email, "password": PASSWORD}
    token = httpx.post(f"{live.url}/v1/auth/token", data=form, timeout=30).json()
    change = {"current_password": PASSWORD, "new_password": "a much longer passphrase 42"}
    answer = httpx.post(
        f"{live.url}/v1/me/password",
        json=change,
        headers={"authorization": f"Bearer {token['access_token']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def _mail_row(live: Any, email: str) -> OutboxMessage | None:
    with live.sessions() as session:
        return session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.channel == "email", OutboxMessage.target == email
            )
        ).first()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mail_is_not_sent_to_a_server_whose_certificate_nobody_vouches_for(
    live: Any, tls_mailbox: tuple[Mailbox, int]
) -> None:
    """A man in the middle answering STARTTLS with a certificate of its own gets nothing:
    the attempt fails (and is retried later), and the mail is not handed over."""
    email = "mitm@doorstep.test"
    _password_changed(live, email)
    row = poll(lambda: _mail_row(live, email), lambda row: bool(row and row.last_error), 20)
    assert row is not None and row.state == "pending", row
    assert "CERTIFICATE_VERIFY_FAILED" in (row.last_error or ""), row.last_error
    assert tls_mailbox[0].subjects == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mail_goes_over_starttls_to_a_server_with_a_trusted_certificate(
    certificate: Path,
    monkeypatch: pytest.MonkeyPatch,
    live: Any,
    tls_mailbox: tuple[Mailbox, int],
) -> None:
    """The operator's own CA is trusted through SSL_CERT_FILE, as OpenSSL reads it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    email = "trusted@doorstep.test"
    _password_changed(live, email)
    row = poll(lambda: _mail_row(live, email), lambda row: bool(row and row.state == "sent"), 20)
    assert row is not None and row.state == "sent", row
    assert tls_mailbox[0].subjects == [CHANGED]


# ---- SMTPS (TLS from the first byte, port 465) --------------------------------------------

SMTPS_PORT = free_port()
SMTPS = NotifySettings(
    smtp_host="127.0.0.1", smtp_port=SMTPS_PORT, smtp_implicit_tls=True, poll_seconds=0.1
)


@pytest.fixture
def smtps_mailbox(certificate: Path) -> Iterator[Mailbox]:
    """An SMTP server that speaks only TLS, from the connection's first byte."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, certificate.with_suffix(".key"))
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=SMTPS_PORT, ssl_context=context)
    controller.start()
    yield box
    controller.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("notify_settings", [SMTPS])
def test_mail_goes_over_implicit_tls_to_a_server_with_a_trusted_certificate(
    certificate: Path, monkeypatch: pytest.MonkeyPatch, live: Any, smtps_mailbox: Mailbox
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    email = "smtps@doorstep.test"
    _password_changed(live, email)
    row = poll(lambda: _mail_row(live, email), lambda row: bool(row and row.state == "sent"), 20)
    assert row is not None and row.state == "sent", row
    assert smtps_mailbox.subjects == [CHANGED]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("notify_settings", [SMTPS])
def test_mail_is_not_sent_over_implicit_tls_to_a_certificate_nobody_vouches_for(
    live: Any, smtps_mailbox: Mailbox
) -> None:
    email = "smtps-mitm@doorstep.test"
    _password_changed(live, email)
    row = poll(lambda: _mail_row(live, email), lambda row: bool(row and row.last_error), 20)
    assert row is not None and row.state == "pending", row
    assert "CERTIFICATE_VERIFY_FAILED" in (row.last_error or ""), row.last_error
    assert smtps_mailbox.subjects == []


def test_port_465_means_implicit_tls_unless_told_otherwise() -> None:
    remote = NotifySettings(smtp_host="smtp.example.com", smtp_port=465)
    assert remote.implicit_tls and not remote.starttls
    assert not NotifySettings(smtp_host="smtp.example.com", smtp_port=587).implicit_tls
    told = NotifySettings(smtp_host="smtp.example.com", smtp_port=465, smtp_implicit_tls=False)
    assert not told.implicit_tls and told.starttls
    # Implicit TLS on another port counts as encrypted: no plain-text refusal.
    assert NotifySettings(smtp_host="192.0.2.25", smtp_implicit_tls=True, smtp_starttls=False)


def test_implicit_tls_and_starttls_cannot_both_be_asked_for() -> None:
    with pytest.raises(ValueError, match="smtp_implicit_tls"):
        NotifySettings(smtp_host="smtp.example.com", smtp_implicit_tls=True, smtp_starttls=True)


# ---- SMTP AUTH: the password from the settings reaches the server -------------------------

AUTH_PORT = free_port()
SMTP_PASSWORD = "the-smtp-password"


@pytest.fixture
def auth_mailbox() -> Iterator[Mailbox]:
    """A loopback SMTP server that takes mail only from `doorstep` / SMTP_PASSWORD."""

    def authenticate(_server: Any, _session: Any, _envelope: Any, _how: str, given: Any) -> Any:
        ok = (given.login, given.password) == (b"doorstep", SMTP_PASSWORD.encode())
        return AuthResult(success=ok)

    box = Mailbox()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=AUTH_PORT,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield box
    controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "notify_settings",
    [NotifySettings(smtp_host="127.0.0.1", smtp_port=AUTH_PORT, smtp_username="doorstep",
                    smtp_password=SMTP_PASSWORD, poll_seconds=0.1)],  # type: ignore[arg-type]
)  # fmt: skip
def test_mail_is_sent_with_the_smtp_password_of_the_settings(
    live: Any, auth_mailbox: Mailbox
) -> None:
    assert SMTP_PASSWORD not in repr(live.settings)
    email = "auth@doorstep.test"
    _password_changed(live, email)
    row = poll(lambda: _mail_row(live, email), lambda row: bool(row and row.state != "pending"),
               20)  # fmt: skip
    assert row is not None and row.state == "sent", row
    assert auth_mailbox.subjects == [CHANGED]
