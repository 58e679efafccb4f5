"""Test certificates, made fresh in each test (no key is ever committed): a CA, and
server certificates it signs, or signed by themselves, expired, or for another host."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOCAL_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def authority(name: str = "Doorstep test CA") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    cert = (
        _builder(subject, subject, key.public_key(), _now() - timedelta(days=1), days=30)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


def server_cert(
    directory: Path,
    *,
    by: Authority | None,
    hosts: tuple[str, ...] = LOCAL_HOSTS,
    expired: bool = False,
) -> tuple[Path, Path]:
    """A server certificate for `hosts`, signed by `by` (None: by itself), written to
    `directory` as cert.pem and key.pem; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(hosts[0])
    issuer = by.cert.subject if by is not None else subject
    not_before = _now() - timedelta(days=10 if expired else 1)
    builder = _builder(subject, issuer, key.public_key(), not_before, days=2 if expired else 30)
    names = [_san(host) for host in hosts]
    cert = builder.add_extension(x509.SubjectAlternativeName(names), critical=False).sign(
        by.key if by is not None else key, hashes.SHA256()
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    *,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _now() -> datetime:
    return datetime.now(UTC)
