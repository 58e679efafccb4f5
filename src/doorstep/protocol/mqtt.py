"""MQTT 5 client set-up shared by the service and the hub (paho-mqtt, threaded loop).

TCP_NODELAY is set on every socket the client opens: without it, each QoS 1 round trip
waits on Nagle's algorithm and delayed ACKs (~88 ms instead of ~1 ms on loopback; DESIGN
"Known traps"). Sessions are persistent (clean start off, session expiry set) so that the
broker queues QoS 1 messages across short disconnects; the journal and acks, not the
broker, are what guarantee nothing is lost.

`mqtts://` connects over TLS: the broker's certificate is always verified (against the
one CA given, or the system's CAs) and its host name checked, TLS 1.2 at least; there is
no way to turn that off. A failed handshake is logged (paho's own loop retries quietly).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

SESSION_EXPIRY_SECONDS = 24 * 3600
KEEPALIVE_SECONDS = 15
URL_FORM = "mqtt://user:password@host:port or mqtts://user:password@host:port[?ca_file=PATH]"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a client connects. `tls`: over TLS (`mqtts://`); `ca_pem`: the one CA
    trusted for the broker's certificate (PEM), None: the system's CAs."""

    host: str
    port: int
    username: str
    password: str
    tls: bool = False
    ca_pem: str | None = None

    def __post_init__(self) -> None:
        if self.ca_pem is not None:
            if not self.tls:
                raise ValueError("a broker CA is only for a TLS (mqtts://) broker")
            self.tls_context()  # a CA that is not PEM fails here, not at each connect

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """mqtt://user:password@host:port (1883), or mqtts://...:port (8883), whose
        `ca_file` query parameter names the PEM file of the CA to trust alone."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker URL must look like {URL_FORM}")
        tls = parts.scheme == "mqtts"
        query = parse_qs(parts.query, keep_blank_values=True)
        if set(query) - {"ca_file"} or len(query.get("ca_file", [])) > 1:
            raise ValueError(f"broker URL: the only query parameter is one ca_file ({URL_FORM})")
        if query and not tls:
            raise ValueError("broker URL: ca_file is for mqtts:// only")
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            tls=tls,
            ca_pem=read_ca_file(query["ca_file"][0]) if query else None,
        )

    def tls_context(self) -> ssl.SSLContext:
        """Verifies the broker's certificate and host name, TLS 1.2 at least."""
        try:
            context = ssl.create_default_context(cadata=self.ca_pem)  # None: system CAs
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"the broker CA is not a PEM certificate: {exc}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.sslsocket_class = _LoggedHandshake
        return context

    def __repr__(self) -> str:  # never print the password
        scheme = "mqtts" if self.tls else "mqtt"
        return f"BrokerAddress({scheme}://{self.host}:{self.port}, user={self.username!r})"


def read_ca_file(path: str | Path) -> str:
    """The PEM text of a broker's CA certificate file; ValueError if it cannot be read
    or holds no certificate."""
    try:
        pem = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the broker CA file {path}: {exc}") from exc
    BrokerAddress("-", 1, "", "", tls=True, ca_pem=pem)  # a PEM certificate, or ValueError
    return pem


class _LoggedHandshake(ssl.SSLSocket):
    """Says why a TLS handshake with the broker failed (a certificate refused: expired,
    for another host, from another CA), where paho would only retry; and closes the
    socket, which paho would leave open for the garbage collector."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            log.error("MQTT broker %s: TLS handshake failed: %s", self.server_hostname, exc)
            self.close()
            raise


def _nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_client(
    client_id: str,
    address: BrokerAddress,
    *,
    will: tuple[str, bytes] | None = None,
) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set_context(address.tls_context())
    client.on_socket_open = _nodelay
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client


def connect(
    client: paho.Client, address: BrokerAddress, *, timeout: float = 10.0, keep_trying: bool = False
) -> bool:
    """Connect (persistent session) and start the network thread; raise if refused or
    not answered within `timeout`. With `keep_trying`, log that instead, leave the network
    thread trying again (paho's reconnect delay), and return False."""
    connected = threading.Event()
    failure: list[str] = []

    def on_connack(reason: Any) -> None:
        if reason.is_failure:
            failure.append(str(reason))
        connected.set()

    previous = prepare_session(client, address, on_connack)
    client.loop_start()
    if connected.wait(timeout) and not failure:
        client.on_connect = previous
        return True
    why = (
        f"MQTT connect to {address.host}:{address.port} failed: "
        f"{failure[0] if failure else 'timeout'}"
    )
    if not keep_trying:
        client.loop_stop()
        raise ConnectionError(why)
    client.on_connect = previous  # its own `on_connect` runs at the connection to come
    log.error("%s; going on without the broker, trying again", why)
    return False


def prepare_session(
    client: paho.Client, address: BrokerAddress, on_connack: Callable[[Any], None]
) -> Any:
    """Set `client` up to connect to `address` with a persistent session (clean start
    off, the session expiry, the keep-alive), and to tell `on_connack` each CONNACK's
    reason before its own `on_connect` runs. Returns that previous `on_connect`."""
    previous = client.on_connect

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        on_connack(reason)
        if previous is not None:
            previous(c, userdata, flags, reason, props)  # type: ignore[call-arg]

    client.on_connect = on_connect
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
    client.connect_async(
        address.host,
        address.port,
        keepalive=KEEPALIVE_SECONDS,
        clean_start=False,
        properties=properties,
    )
    return previous


def expiring(seconds: int) -> Properties:
    """PUBLISH properties with a message expiry, for every command the service sends."""
    properties = _Packed(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = seconds
    return properties.freeze()


class _Packed(Properties):
    """Properties that never change once built, packed once: paho packs a message's
    properties at every publish by walking every property name it knows (about forty
    attribute checks), on the courier's hot path."""

    def freeze(self) -> _Packed:
        packed = super().pack()  # type: ignore[no-untyped-call]
        object.__setattr__(self, "_packed", packed)  # paho's __setattr__ refuses this name
        return self

    def pack(self) -> bytes:
        packed: bytes = self.__dict__["_packed"]
        return packed


def close(client: paho.Client) -> None:
    """Disconnect, stop the network thread and release every socket the client holds
    (paho keeps a wake-up socket pair open until `reinitialise`)."""
    client.disconnect()
    client.loop_stop()
    client.reinitialise()
