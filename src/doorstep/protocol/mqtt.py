"""MQTT 5 client set-up shared by the service and the hub (paho-mqtt, threaded loop).

TCP_NODELAY is set on every socket the client opens: without it, each QoS 1 round trip
waits on Nagle's algorithm and delayed ACKs (~88 ms instead of ~1 ms on loopback; DESIGN
"Known traps"). Sessions are persistent (clean start off, session expiry set) so that the
broker queues QoS 1 messages across short disconnects; the journal and acks, not the
broker, are what guarantee nothing is lost.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SESSION_EXPIRY_SECONDS = 24 * 3600
KEEPALIVE_SECONDS = 15


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ValueError("broker URL must look like mqtt://user:password@host:port")
        return cls(
            host=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )

    def __repr__(self) -> str:  # never print the password
        return f"BrokerAddress({self.host}:{self.port}, user={self.username!r})"


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
    client.on_socket_open = _nodelay
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client


def connect(client: paho.Client, address: BrokerAddress, *, timeout: float = 10.0) -> None:
    """Connect (persistent session) and start the network thread; raise if refused."""
    connected = threading.Event()
    failure: list[str] = []

    def on_connack(reason: Any) -> None:
        if reason.is_failure:
            failure.append(str(reason))
        connected.set()

    previous = prepare_session(client, address, on_connack)
    client.loop_start()
    if not connected.wait(timeout) or failure:
        client.loop_stop()
        raise ConnectionError(
            f"MQTT connect to {address.host}:{address.port} failed: "
            f"{failure[0] if failure else 'timeout'}"
        )
    client.on_connect = previous


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
