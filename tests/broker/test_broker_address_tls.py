"""Broker URLs: `mqtts://` means TLS with the certificate and host name always checked,
TLS 1.2 at least, against one CA file if given; anything else in the URL is refused."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from certificates import authority

from doorstep.protocol.mqtt import BrokerAddress


def _ca_file(tmp_path: Path) -> Path:
    # A CA certificate from the certificate helpers of the broker tests.

    path = tmp_path / "ca.pem"
    path.write_text(authority().pem)
    return path


def test_mqtts_is_tls_on_8883_with_the_system_cas_by_default() -> None:
    address = BrokerAddress.from_url("mqtts://svc:pw@broker.example")
    assert (address.tls, address.port, address.ca_pem) == (True, 8883, None)
    context = address.tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_mqtts_with_a_ca_file_trusts_that_ca_alone(tmp_path: Path) -> None:
    ca_file = _ca_file(tmp_path)
    address = BrokerAddress.from_url(f"mqtts://svc:pw@broker.example:9883?ca_file={ca_file}")
    assert (address.port, address.ca_pem) == (9883, ca_file.read_text())
    assert address.tls_context().cert_store_stats()["x509_ca"] == 1


def test_mqtt_stays_plain_on_1883() -> None:
    address = BrokerAddress.from_url("mqtt://svc:pw@broker.example")
    assert (address.tls, address.port) == (False, 1883)
    assert "pw" not in repr(address)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mqtt://svc:pw@h?ca_file=/etc/ssl/ca.pem", "mqtts:// only"),
        ("mqtts://svc:pw@h?verify=false", "only query parameter"),
        ("mqtts://svc:pw@h?ca_file=/a&ca_file=/b", "only query parameter"),
        ("mqtts://svc:pw@h?ca_file=/nonexistent/ca.pem", "cannot read"),
        ("http://svc:pw@h", "must look like"),
    ],
)
def test_a_bad_broker_url_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        BrokerAddress.from_url(url)


def test_a_ca_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="not a PEM certificate"):
        BrokerAddress.from_url(f"mqtts://svc:pw@h?ca_file={path}")
