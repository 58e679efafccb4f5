"""The rendered ACL, password file and mosquitto.conf, checked as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorstep.broker import BrokerUser, hash_password
from doorstep.broker.config import render_acl, render_mosquitto_conf, render_passwords


def body(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_acl_gives_each_hub_only_its_own_leaves() -> None:
    acl = render_acl("doorstep-service", ["hub-bbb", "hub-aaa"])

    assert body(acl) == [
        "user doorstep-service",
        "topic readwrite doorstep/hubs/#",
        "user hub-aaa",
        "topic read doorstep/hubs/hub-aaa/cmd",
        "topic read doorstep/hubs/hub-aaa/ack",
        "topic read doorstep/hubs/hub-aaa/desired",
        "topic write doorstep/hubs/hub-aaa/events",
        "topic write doorstep/hubs/hub-aaa/reply",
        "topic write doorstep/hubs/hub-aaa/status",
        "topic write doorstep/hubs/hub-aaa/reported",
        "topic write doorstep/hubs/hub-aaa/camera",
        "user hub-bbb",
        "topic read doorstep/hubs/hub-bbb/cmd",
        "topic read doorstep/hubs/hub-bbb/ack",
        "topic read doorstep/hubs/hub-bbb/desired",
        "topic write doorstep/hubs/hub-bbb/events",
        "topic write doorstep/hubs/hub-bbb/reply",
        "topic write doorstep/hubs/hub-bbb/status",
        "topic write doorstep/hubs/hub-bbb/reported",
        "topic write doorstep/hubs/hub-bbb/camera",
    ]


def test_acl_with_no_hubs_names_only_the_service() -> None:
    assert body(render_acl("doorstep-service", [])) == [
        "user doorstep-service",
        "topic readwrite doorstep/hubs/#",
    ]


@pytest.mark.parametrize(
    "hub_id",
    [
        "a/#\ntopic readwrite #",
        "hub-abc\n",  # the pattern's `$` alone would let a trailing newline through
        "hub-abc\ntopic readwrite #",
        "hub-abc topic",
        "hub-+",
        "HUB-ABC",
        "",
    ],
)
def test_acl_rejects_hub_ids_that_could_change_its_meaning(hub_id: str) -> None:
    with pytest.raises(ValueError, match="hub id"):
        render_acl("doorstep-service", [hub_id])


@pytest.mark.parametrize("service_user", ["doorstep service", "svc\ntopic readwrite #", ""])
def test_acl_rejects_bad_service_user_names(service_user: str) -> None:
    with pytest.raises(ValueError, match="service user"):
        render_acl(service_user, [])


def test_acl_refuses_a_hub_named_like_the_service() -> None:
    with pytest.raises(ValueError, match="service user"):
        render_acl("hub-aaa", ["hub-aaa"])


def test_password_file_has_one_line_per_user() -> None:
    hashed = hash_password("pw", salt=b"0123456789ab")
    users = [BrokerUser("doorstep-service", hashed), BrokerUser("hub-aaa", hashed)]

    assert render_passwords(users) == f"doorstep-service:{hashed}\nhub-aaa:{hashed}\n"


@pytest.mark.parametrize(
    ("username", "password_hash"),
    [
        ("hub-aaa:x", hash_password("pw")),
        ("hub-aaa\nhub-bbb", hash_password("pw")),
        ("hub-aaa", "plaintext"),
        ("hub-aaa", hash_password("pw") + "\nhub-bbb:" + hash_password("pw")),
    ],
)
def test_broker_user_rejects_what_would_break_the_file(username: str, password_hash: str) -> None:
    with pytest.raises(ValueError):
        BrokerUser(username, password_hash)


def render_conf(tmp_path: Path, **overrides: object) -> str:
    arguments: dict[str, object] = {
        "port": 18830,
        "data_dir": tmp_path / "data",
        "password_file": tmp_path / "passwords",
        "acl_file": tmp_path / "acl",
        "log_file": None,
    }
    arguments.update(overrides)
    return render_mosquitto_conf(**arguments)  # type: ignore[arg-type]


def test_conf_listens_on_loopback_only_with_authentication(tmp_path: Path) -> None:
    lines = body(render_conf(tmp_path))

    assert "per_listener_settings false" in lines
    assert "listener 18830 127.0.0.1" in lines
    assert "allow_anonymous false" in lines
    assert f"password_file {tmp_path.resolve()}/passwords" in lines
    assert f"acl_file {tmp_path.resolve()}/acl" in lines
    assert f"persistence_location {tmp_path.resolve()}/data/" in lines
    assert "set_tcp_nodelay true" in lines
    assert "log_dest stderr" in lines
    assert not any(line.startswith("user ") for line in lines)


def test_conf_writes_one_log_type_per_line(tmp_path: Path) -> None:
    # Mosquitto 2.0 silently ignores every word after the first on a log_type line.
    log_types = [line for line in body(render_conf(tmp_path)) if line.startswith("log_type")]

    assert log_types == [
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
    ]


def test_conf_can_log_to_a_file_and_keep_a_user(tmp_path: Path) -> None:
    lines = body(render_conf(tmp_path, log_file=tmp_path / "m.log", user="root"))

    assert f"log_dest file {tmp_path.resolve()}/m.log" in lines
    assert "user root" in lines


@pytest.mark.parametrize(
    "overrides",
    [
        {"port": 0},
        {"port": 65536},
        {"acl_file": Path("/tmp/acl\nallow_anonymous true")},
        {"user": "root\nallow_anonymous true"},
    ],
)
def test_conf_rejects_values_that_would_add_options(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        render_conf(tmp_path, **overrides)
