"""Fixtures for the broker tests: a running Mosquitto with two hubs, and MQTT v5 clients.

Clients queue what they receive; tests wait on those queues with timeouts. To show that
something was NOT delivered, a test publishes a sentinel after it and waits for the
sentinel: the broker keeps each publisher's order, so the forbidden message would have
arrived first.
"""

from __future__ import annotations

import queue
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from doorstep.broker import Mosquitto, hash_password, new_password

TIMEOUT = 5.0
HUB_A = "hub-3f9a1c2b"
HUB_B = "hub-77aa0e19"


class Refused(Exception):
    """The broker answered CONNECT with a failure reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Session:
    """One connected paho client and the messages and events it has seen."""

    client: mqtt.Client
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    events: queue.Queue[tuple[str, str]] = field(default_factory=queue.Queue)

    def subscribe(self, topic: str) -> list[str]:
        """Subscribe at QoS 1; return the SUBACK reason names."""
        acks: queue.Queue[list[str]] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: acks.put(
            [str(code) for code in codes]
        )
        result, _mid = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        return acks.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> str:
        """Publish at QoS 1; return the PUBACK reason name."""
        acks: dict[int, str] = {}

        def on_publish(
            _c: mqtt.Client, _u: object, mid: int, code: ReasonCode, _p: Properties
        ) -> None:
            acks[mid] = str(code)

        self.client.on_publish = on_publish
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
        return acks[info.mid]

    def next_message(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=TIMEOUT)

    def topics_before(self, sentinel_topic: str, sentinel: bytes) -> list[str]:
        """Topics received until the sentinel arrives (the sentinel not included)."""
        seen: list[str] = []
        while True:
            message = self.next_message()
            if message.topic == sentinel_topic and message.payload == sentinel:
                return seen
            seen.append(message.topic)

    def next_event(self) -> tuple[str, str]:
        return self.events.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        # paho closes its wake-up socket pair only when the client is collected
        # (eclipse-paho/paho.mqtt.python#627); reinitialise() closes it now.
        self.client.reinitialise()


def open_session(
    broker: Mosquitto, username: str | None, password: str | None, client_id: str = ""
) -> Session:
    """Connect with MQTT v5; raise `Refused` with the CONNACK reason on failure."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=client_id)
    session = Session(client)
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = _on_connect(session)
    client.on_disconnect = _on_disconnect(session)
    client.on_message = lambda _c, _u, message: session.messages.put(message)
    client.connect(broker.host, broker.port)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    # As in production (DESIGN "Known traps"): without it each round trip costs ~88 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    kind, reason = session.next_event()
    if kind != "connect" or reason != "Success":
        session.close()
        raise Refused(reason)
    return session


def _on_connect(session: Session) -> Callable[..., None]:
    def on_connect(
        _c: mqtt.Client, _u: object, _f: object, code: ReasonCode, _p: Properties | None
    ) -> None:
        session.events.put(("connect", str(code)))

    return on_connect


def _on_disconnect(session: Session) -> Callable[..., None]:
    def on_disconnect(
        _c: mqtt.Client, _u: object, _f: object, code: ReasonCode, _p: Properties | None
    ) -> None:
        session.events.put(("disconnect", str(code)))

    return on_disconnect


@pytest.fixture
def hub_passwords() -> dict[str, str]:
    """Two provisioned hubs, id -> plaintext password; the first is "hub A"."""
    return {HUB_A: new_password(), HUB_B: new_password()}


@pytest.fixture
def hub_hashes(hub_passwords: dict[str, str]) -> dict[str, str]:
    return {hub: hash_password(password) for hub, password in hub_passwords.items()}


@pytest.fixture
def broker(tmp_path: Path, hub_hashes: dict[str, str]) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start(hub_hashes)
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def connect(broker: Mosquitto) -> Iterator[Callable[..., Session]]:
    """Open sessions on `broker` (raising `Refused`); all are closed after the test."""
    sessions: list[Session] = []

    def _connect(username: str | None, password: str | None, client_id: str = "") -> Session:
        session = open_session(broker, username, password, client_id)
        sessions.append(session)
        return session

    yield _connect
    for session in sessions:
        session.close()


@pytest.fixture
def connack(connect: Callable[[str | None, str | None], Session]) -> Callable[..., str]:
    """The CONNACK reason name the broker gives these credentials."""

    def _connack(username: str | None, password: str | None) -> str:
        try:
            connect(username, password)
        except Refused as refused:
            return refused.reason
        return "Success"

    return _connack


@pytest.fixture
def service(broker: Mosquitto, connect: Callable[[str, str], Session]) -> Session:
    return connect(broker.service_user, broker.service_password)


@pytest.fixture
def hub_a(hub_passwords: dict[str, str], connect: Callable[[str, str], Session]) -> Session:
    return connect(HUB_A, hub_passwords[HUB_A])
