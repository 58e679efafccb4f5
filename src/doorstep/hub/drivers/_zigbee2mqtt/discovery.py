"""The locks and contact sensors that Zigbee2MQTT lists in its retained `bridge/devices`.

Each entry is shaped by Zigbee2MQTT 2.x `Bridge.publishDevices()`: `friendly_name`,
`ieee_address`, `type`, `supported`, `disabled`, `interview_completed`, and
`definition: {model, vendor, description, exposes, ...}` (absent for the coordinator).
A lock exposes `{"type": "lock", "features": [{"property": "state", "value_on": "LOCK",
"value_off": "UNLOCK", ...}, {"property": "lock_state", ...}]}` (exposes.ts `lock()`);
a contact sensor a binary `contact`.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import paho.mqtt.client as paho

from doorstep.hub.drivers._zigbee2mqtt.config import Zigbee2MqttBroker, check_known_keys
from doorstep.protocol.mqtt import BrokerAddress, close, make_client

log = logging.getLogger("doorstep.hub.drivers.zigbee2mqtt")


class DeviceKind(StrEnum):
    LOCK = "lock"
    CONTACT_SENSOR = "contact_sensor"


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    """A device this driver can use; `properties` are the state keys it exposes
    (e.g. "lock_state", "door_state", "pin_code", "battery", "contact")."""

    friendly_name: str
    ieee_address: str
    kind: DeviceKind
    model: str
    vendor: str
    description: str
    properties: frozenset[str]


@dataclass(frozen=True, slots=True)
class Discovery:
    locks: tuple[DiscoveredDevice, ...]
    contact_sensors: tuple[DiscoveredDevice, ...]


def parse_bridge_devices(document: Any) -> Discovery:
    """The locks and contact sensors in a decoded `bridge/devices` payload.

    A lock's `state` must switch between "LOCK" and "UNLOCK" on the device itself
    (locks exposed per endpoint are not supported). Disabled, unsupported and
    half-interviewed devices are left out; malformed entries are skipped with a warning.
    Raises ValueError when the payload is not a list.
    """
    if not isinstance(document, list):
        raise ValueError("bridge/devices is not a JSON list")
    locks: list[DiscoveredDevice] = []
    sensors: list[DiscoveredDevice] = []
    for entry in document:
        device = _discovered(entry)
        if device is not None:
            (locks if device.kind == DeviceKind.LOCK else sensors).append(device)
    return Discovery(tuple(locks), tuple(sensors))


def discover_locks(config: Mapping[str, Any], *, timeout: float = 5.0) -> Discovery:
    """Connect with the broker keys of a driver config (`config` module), read the
    retained `bridge/devices` and list its locks and contact sensors.

    Raises ConnectionError if the broker refuses us, TimeoutError if no device list
    arrives within `timeout` (no Zigbee2MQTT there, or no broker), ValueError if the
    list is not JSON.
    """
    check_known_keys(config)
    broker = Zigbee2MqttBroker.from_config(config)
    payload = _read_retained(broker, broker.topic("bridge", "devices"), timeout)
    return parse_bridge_devices(json.loads(payload))


def _read_retained(broker: Zigbee2MqttBroker, topic: str, timeout: float) -> bytes:
    received: list[bytes] = []
    refused: list[str] = []
    done = threading.Event()

    def on_connect(client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            done.set()
        else:
            client.subscribe(topic, qos=1)

    def on_message(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        received.append(bytes(message.payload))
        done.set()

    client = make_client(
        broker.client_id or f"doorstep-z2m-{secrets.token_hex(6)}",
        BrokerAddress(broker.host, broker.port, "", ""),
    )
    client.username_pw_set(broker.username, broker.password)  # None: anonymous
    client.on_connect, client.on_message = on_connect, on_message
    client.connect_async(broker.host, broker.port, keepalive=15, clean_start=True)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise TimeoutError(f"no {topic} within {timeout:.1f} s")
        if refused:
            raise ConnectionError(f"broker {broker.host}:{broker.port}: {refused[0]}")
        return received[0]
    finally:
        close(client)


def _discovered(entry: Any) -> DiscoveredDevice | None:
    if not isinstance(entry, dict) or entry.get("type") == "Coordinator":
        return None
    if entry.get("disabled") or not entry.get("supported", True):
        return None
    if not entry.get("interview_completed", True) or entry.get("definition") is None:
        return None
    definition, name = entry["definition"], entry.get("friendly_name")
    exposes = definition.get("exposes") if isinstance(definition, dict) else None
    if not isinstance(name, str) or not isinstance(exposes, list):
        log.warning("skipped a malformed bridge/devices entry")
        return None
    kind = _kind(exposes)
    if kind is None:
        return None
    return DiscoveredDevice(
        friendly_name=name,
        ieee_address=str(entry.get("ieee_address", "")),
        kind=kind,
        model=str(definition.get("model", "")),
        vendor=str(definition.get("vendor", "")),
        description=str(definition.get("description", "")),
        properties=frozenset(_properties(exposes)),
    )


def _kind(exposes: list[Any]) -> DeviceKind | None:
    if any(_is_lock(expose) for expose in exposes):
        return DeviceKind.LOCK
    for expose in _flatten(exposes):
        if expose.get("property") == "contact" and expose.get("type") == "binary":
            return DeviceKind.CONTACT_SENSOR
    return None


def _is_lock(expose: Any) -> bool:
    if not isinstance(expose, dict) or expose.get("type") != "lock" or "endpoint" in expose:
        return False
    features = expose.get("features")
    return isinstance(features, list) and any(
        isinstance(feature, dict)
        and feature.get("property") == "state"
        and feature.get("value_on") == "LOCK"
        and feature.get("value_off") == "UNLOCK"
        for feature in features
    )


def _flatten(exposes: list[Any]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for expose in exposes:
        if isinstance(expose, dict):
            flat.append(expose)
            features = expose.get("features")
            if isinstance(features, list):
                flat.extend(_flatten(features))
    return flat


def _properties(exposes: list[Any]) -> list[str]:
    return [name for item in _flatten(exposes) if isinstance(name := item.get("property"), str)]
