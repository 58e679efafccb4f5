"""TLS from enrollment on: `serve` with a TLS listener for hubs tells them so (and its
CA) in the claim answer, hub.json keeps it, and a real hub connects over TLS; an older
hub.json, written before TLS, still reads as plain; a malformed answer changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from certificates import authority, server_cert
from pydantic import ValidationError

from doorstep import demo
from doorstep.broker import TlsListener
from doorstep.broker.config import render_mosquitto_conf
from doorstep.broker.supervisor import free_port
from doorstep.hub import config as hub_config
from doorstep.protocol import mqtt
from doorstep.settings import Settings

OLD_HUB_JSON = {
    "hub_id": "hub-0123456789abcdef",
    "home_id": "hom-0123456789abcdef",
    "broker": {"host": "broker.example", "port": 1883, "username": "hub-0123456789abcdef",
               "password": "secret"},
    "issuer_keys": {},
    "access_points": ["front"],
}  # fmt: skip


def test_an_older_hub_json_without_tls_reads_as_plain(tmp_path: Path) -> None:
    (tmp_path / "hub.json").write_bytes(orjson.dumps(OLD_HUB_JSON))
    config = hub_config.load(tmp_path)
    assert config is not None
    assert (config.broker.tls, config.broker.ca_pem) == (False, None)


def test_hub_json_keeps_tls_and_the_ca(tmp_path: Path) -> None:
    ca_pem = authority().pem
    answer = {**OLD_HUB_JSON, "broker": {**OLD_HUB_JSON["broker"], "tls": True, "ca_pem": ca_pem}}
    config = hub_config.HubConfig.from_enrollment(answer)
    again = hub_config.HubConfig.from_enrollment(orjson.loads(config.to_json()))
    assert (again.broker.tls, again.broker.ca_pem, again.broker.port) == (True, ca_pem, 1883)


@pytest.mark.parametrize(
    "broker",
    [
        {"tls": "yes"},  # not a boolean: never read as "on" (or "off")
        {"tls": False, "ca_pem": authority().pem},  # a CA for a plain broker
        {"tls": True, "ca_pem": "not a certificate"},
        {"tls": True, "ca_pem": 7},
    ],
)
def test_a_malformed_tls_answer_is_an_enrollment_error(broker: dict[str, Any]) -> None:
    answer = {**OLD_HUB_JSON, "broker": {**OLD_HUB_JSON["broker"], **broker}}
    with pytest.raises(hub_config.EnrollmentError):
        hub_config.HubConfig.from_enrollment(answer)


def test_the_tls_listener_is_rendered_after_the_loopback_one(tmp_path: Path) -> None:
    listener = TlsListener(None, 8883, tmp_path / "cert.pem", tmp_path / "key.pem")
    conf = render_mosquitto_conf(
        port=1883,
        data_dir=tmp_path,
        password_file=tmp_path / "passwords",
        acl_file=tmp_path / "acl",
        log_file=None,
        tls=listener,
    ).splitlines()
    tail = conf[conf.index("listener 8883") :]
    assert tail == [
        "listener 8883",
        f"certfile {tmp_path.resolve()}/cert.pem",
        f"keyfile {tmp_path.resolve()}/key.pem",
        "tls_version tlsv1.2",
    ]
    assert "listener 1883 127.0.0.1" in conf and "per_listener_settings false" in conf


@pytest.mark.parametrize("host", ["0.0.0.0\nallow_anonymous true", "a b", ""])
def test_a_tls_listener_host_cannot_add_options(host: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="configuration word"):
        TlsListener(host, 8883, tmp_path / "cert.pem", tmp_path / "key.pem")


@pytest.mark.parametrize(
    "settings",
    [
        {"broker_tls_cert_file": "cert.pem"},
        {"broker_tls_key_file": "key.pem"},
        {"broker_tls_ca_file": "ca.pem"},
        {"broker_tls_cert_file": "c", "broker_tls_key_file": "k", "broker_url": "mqtt://h"},
        {"broker_tls_port": 0},
    ],
)
def test_half_a_tls_listener_is_refused(settings: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, **settings)


@pytest.fixture
def tls_service(tmp_path: Path) -> Iterator[tuple[demo.Service, int, str]]:
    ca = authority()
    cert_file, key_file = server_cert(tmp_path / "tls", by=ca)
    ca_file = tmp_path / "tls" / "ca.pem"
    ca_file.write_text(ca.pem)
    tls_port = free_port()
    env = {
        "DOORSTEP_BROKER_TLS_CERT_FILE": str(cert_file),
        "DOORSTEP_BROKER_TLS_KEY_FILE": str(key_file),
        "DOORSTEP_BROKER_TLS_CA_FILE": str(ca_file),
        "DOORSTEP_BROKER_TLS_HOST": "127.0.0.1",
        "DOORSTEP_BROKER_TLS_PORT": str(tls_port),
        "DOORSTEP_BROKER_PUBLIC_HOST": "127.0.0.1",
    }
    service = demo.start_service(tmp_path / "demo", env=env)
    try:
        yield service, tls_port, ca.pem
    finally:
        assert service.process is not None
        service.process.stop()


def test_a_hub_enrolled_with_a_tls_serve_connects_over_tls(
    tls_service: tuple[demo.Service, int, str],
) -> None:
    service, tls_port, ca_pem = tls_service
    world = demo.build_world(service, homes=1, say=lambda _m: None)  # the hub comes online
    try:
        [home] = world.homes
        config = hub_config.load(home.hub_dir)
        assert config is not None
        assert config.broker == mqtt.BrokerAddress(
            "127.0.0.1", tls_port, home.hub_id, config.broker.password, tls=True, ca_pem=ca_pem
        )
        log = (service.data_dir / "broker" / "mosquitto.log").read_text()
        assert f"on port {tls_port}" in log and f"as {home.hub_id}" in log
    finally:
        world.close()
