"""Render the three files a local Mosquitto runs from: configuration, passwords, ACL.

Pure functions from values to text; `supervisor.Mosquitto` writes them to disk. Every
name that reaches a file is validated first, so a crafted hub id or user name cannot add
lines (a newline in a hub id would otherwise grant it `topic readwrite #`).

The ACL follows DESIGN principle 6 (deny by default): the service user reads and writes
every hub's topics; each hub reads only the leaves in `HUB_READS` and writes only the
leaves in `HUB_WRITES`, under its own id. No `pattern` lines and no anonymous section,
so a user the file does not name can do nothing. An optional second listener, for hubs
across a network, speaks TLS only (`TlsListener`); with `per_listener_settings false`
the same passwords and ACL hold on both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from doorstep.broker.passwords import HASH_PATTERN
from doorstep.protocol.shadow import MAX_DESIRED_BYTES
from doorstep.protocol.topics import HUB_ID_PATTERN, HUB_READS, HUB_WRITES, ROOT, Topics

SERVICE_USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LOG_TYPES = ("error", "warning", "notice", "information")
HEADER = "# Written by doorstep; edits are overwritten.\n"
# The largest payload the broker takes: a desired document, the largest message we send.
# Unbounded, one hub owner holding their hub's password could park retained messages of
# up to 256 MB each in the broker (and its persistence) and push them at the service.
MAX_PAYLOAD_BYTES = MAX_DESIRED_BYTES


@dataclass(frozen=True)
class TlsListener:
    """A listener for hubs that speaks TLS 1.2 or later only, with this certificate
    (chain) and key, both PEM files Mosquitto reads; `host`: the address it binds,
    None: every interface."""

    host: str | None
    port: int
    cert_file: Path
    key_file: Path

    def __post_init__(self) -> None:
        _check_port(self.port)
        if self.host is not None:
            _check_conf_word(self.host)

    def lines(self) -> list[str]:
        address = f" {self.host}" if self.host is not None else ""
        return [
            f"listener {self.port}{address}",
            f"certfile {_conf_path(self.cert_file)}",
            f"keyfile {_conf_path(self.key_file)}",
            "tls_version tlsv1.2",  # the least it accepts (Mosquitto 2.0)
        ]


@dataclass(frozen=True)
class BrokerUser:
    """One line of the password file: a user name and its `$7$` hash."""

    username: str
    password_hash: str

    def __post_init__(self) -> None:
        _check_username(self.username)
        if not HASH_PATTERN.fullmatch(self.password_hash):
            raise ValueError(f"not a Mosquitto $7$ hash for {self.username!r}")


def render_passwords(users: Iterable[BrokerUser]) -> str:
    """The password file: one `user:hash` line per user."""
    lines = [f"{user.username}:{user.password_hash}\n" for user in users]
    return "".join(lines)


def render_acl(service_users: str | Iterable[str], hub_ids: Iterable[str]) -> str:
    """The ACL file: service users reach all hubs; each hub only its own leaves."""
    services = [service_users] if isinstance(service_users, str) else list(service_users)
    blocks = []
    for service_user in services:
        _check_service_user(service_user)
        blocks.append(f"user {service_user}\ntopic readwrite {ROOT}/#\n")
    for hub_id in sorted(set(hub_ids)):
        if hub_id in services:
            raise ValueError(f"hub id {hub_id!r} is a service user's name")
        blocks.append(_hub_block(_topics(hub_id)))
    return HEADER + "\n".join(blocks)


def render_mosquitto_conf(
    *,
    port: int,
    data_dir: Path,
    password_file: Path,
    acl_file: Path,
    log_file: Path | None,
    user: str | None = None,
    max_payload_bytes: int | None = MAX_PAYLOAD_BYTES,
    tls: TlsListener | None = None,
) -> str:
    """The broker configuration: one loopback listener (and the `tls` one, if given),
    authenticated, persistent, with payloads bounded by `max_payload_bytes` (None: MQTT's
    own 256 MB).

    `user` is the account Mosquitto keeps when started as root; without it, it switches
    to `mosquitto`, which cannot read our 0600 files or write `data_dir`.
    """
    _check_port(port)
    if max_payload_bytes is not None and max_payload_bytes < 1:
        raise ValueError(f"not a payload limit: {max_payload_bytes}")
    lines = [
        "per_listener_settings false",
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        # The client id is the user name: a hub cannot take over another hub's session
        # (or push it off the broker) by connecting under its client id.
        "use_username_as_clientid true",
        f"password_file {_conf_path(password_file)}",
        f"acl_file {_conf_path(acl_file)}",
        "persistence true",
        f"persistence_location {_conf_path(data_dir)}/",
        "autosave_interval 30",
        # Without it every round trip waits on Nagle: ~88 ms instead of ~1 ms.
        "set_tcp_nodelay true",
        # Past this the broker drops silently; hubs' journals and acks cover the loss.
        "max_queued_messages 10000",
        "persistent_client_expiration 14d",
        "connection_messages true",
        _log_dest(log_file),
        # Mosquitto reads only the first word of a `log_type` line: one line per type.
        *(f"log_type {log_type}" for log_type in LOG_TYPES),
    ]
    if max_payload_bytes is not None:
        # A larger message is neither kept nor forwarded (QoS 1: PUBACK with an error).
        lines.append(f"message_size_limit {max_payload_bytes}")
    if user is not None:
        _check_conf_word(user)
        lines.append(f"user {user}")
    if tls is not None:
        lines += tls.lines()  # last: certfile and the rest apply to the listener above
    return HEADER + "\n".join(lines) + "\n"


def _hub_block(topics: Topics) -> str:
    lines = [f"user {topics.hub_id}"]
    lines += [f"topic read {topics.leaf(leaf)}" for leaf in HUB_READS]
    lines += [f"topic write {topics.leaf(leaf)}" for leaf in HUB_WRITES]
    return "\n".join(lines) + "\n"


def _topics(hub_id: str) -> Topics:
    # fullmatch, not the pattern's own `$`: `$` also matches before a trailing newline.
    if not HUB_ID_PATTERN.fullmatch(hub_id):
        raise ValueError(f"not a valid hub id: {hub_id!r}")
    return Topics(hub_id)


def _log_dest(log_file: Path | None) -> str:
    if log_file is None:
        return "log_dest stderr"
    return f"log_dest file {_conf_path(log_file)}"


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port}")


def _check_username(username: str) -> None:
    if not (HUB_ID_PATTERN.fullmatch(username) or SERVICE_USER_PATTERN.fullmatch(username)):
        raise ValueError(f"not a valid broker user name: {username!r}")


def _check_service_user(service_user: str) -> None:
    if not SERVICE_USER_PATTERN.fullmatch(service_user):
        raise ValueError(f"not a valid service user name: {service_user!r}")


def _check_conf_word(word: str) -> None:
    if not word or any(char.isspace() for char in word):
        raise ValueError(f"not a single configuration word: {word!r}")


def _conf_path(path: Path) -> str:
    # Mosquitto keeps spaces inside a path value, but a line break would start a new option.
    text = str(path.resolve())
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError(f"path cannot go into mosquitto.conf: {text!r}")
    return text
