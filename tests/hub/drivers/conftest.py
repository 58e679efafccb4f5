"""Fixtures for the Zigbee2MQTT driver tests: a real Mosquitto, the Zigbee2MQTT peer, drivers.

The broker is a `doorstep.broker.Mosquitto` of this module's own, not the session
`broker`: Mosquitto ties each client id to its user name, so the peer, the driver and
discovery each need a user, and users must be added before the broker starts. Its
deny-by-default ACL opens only `doorstep/hubs/#` to service users, so each test runs
Zigbee2MQTT under its own base topic there (`mqtt.base_topic` is a Zigbee2MQTT setting;
the default `zigbee2mqtt` is checked in the config tests). One base topic per test also
keeps each test's retained messages to itself.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from doorstep.broker import Mosquitto
from doorstep.hub.drivers.zigbee2mqtt import Zigbee2MqttLock
from doorstep.protocol.mqtt import BrokerAddress

from .z2m_peer import LOCK, SENSOR, Z2mPeer

USERS = ("z2m-bridge", "z2m-hub", "z2m-setup")
WAIT = 5.0  # seconds any awaited condition may take before the test fails


@dataclass
class Z2mBroker:
    mosquitto: Mosquitto
    passwords: dict[str, str]

    def address(self, user: str) -> BrokerAddress:
        return BrokerAddress(self.mosquitto.host, self.mosquitto.port, user, self.passwords[user])

    def config(self, user: str, base_topic: str, **extra: Any) -> dict[str, Any]:
        return {
            "host": self.mosquitto.host,
            "port": self.mosquitto.port,
            "username": user,
            "password": self.passwords[user],
            "base_topic": base_topic,
            **extra,
        }


@pytest.fixture(scope="module")
def z2m_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Z2mBroker]:
    mosquitto = Mosquitto(Path(tmp_path_factory.mktemp("z2m-broker")), max_payload_bytes=None)
    passwords = {user: mosquitto.add_service_user(user) for user in USERS}
    mosquitto.start({})
    yield Z2mBroker(mosquitto, passwords)
    mosquitto.stop()


@dataclass
class Events:
    """Every event a driver delivers, with a way to wait for more."""

    seen: list[Any] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, event: Any) -> None:
        with self._changed:
            self.seen.append(event)
            self._changed.notify_all()

    def wait(self, count: int, timeout: float = WAIT) -> list[Any]:
        """The first `count` events, once they have all arrived (fails otherwise)."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.seen) >= count, timeout)
            assert arrived, f"waited for {count} events, got {self.seen}"
            return list(self.seen[:count])

    def snapshot(self) -> list[Any]:
        with self._changed:
            return list(self.seen)


@dataclass
class Rig:
    """A Zigbee2MQTT peer under a fresh base topic, and drivers pointed at it."""

    broker: Z2mBroker
    peer: Z2mPeer
    drivers: list[Zigbee2MqttLock] = field(default_factory=list)

    def config(self, **overrides: Any) -> dict[str, Any]:
        values = {"lock": LOCK, "contact_sensor": SENSOR, **overrides}
        config = self.broker.config("z2m-hub", self.peer.base, **values)
        return {key: value for key, value in config.items() if value is not None}

    def driver(self, *, ready: bool = True, **overrides: Any) -> tuple[Zigbee2MqttLock, Events]:
        """A connected driver with an event recorder, online unless `ready` is false."""
        driver = Zigbee2MqttLock.from_config(self.config(**overrides), connect=False)
        self.drivers.append(driver)
        events = Events()
        driver.subscribe(events)
        driver.connect()
        if ready:
            assert driver.wait_for(lambda status: status.online, WAIT), driver.status()
        return driver, events


@pytest.fixture
def rig(z2m_broker: Z2mBroker) -> Iterator[Rig]:
    base = f"doorstep/hubs/z2m-{secrets.token_hex(4)}/zigbee2mqtt"
    peer = Z2mPeer(z2m_broker.address("z2m-bridge"), base)
    peer.start()
    rig = Rig(z2m_broker, peer)
    yield rig
    for driver in rig.drivers:
        driver.close()
    peer.stop()
    assert not peer.errors, peer.errors
