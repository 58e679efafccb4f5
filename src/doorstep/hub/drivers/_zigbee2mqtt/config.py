"""The Zigbee2MQTT driver's config mapping, validated into frozen settings.

Keys (only `host` and `lock` are required; defaults in brackets):

    host                  the resident's MQTT broker that Zigbee2MQTT uses
    port                  [1883]
    username, password    [none: anonymous]
    base_topic            ["zigbee2mqtt"] Zigbee2MQTT's `mqtt.base_topic`
    client_id             [random "doorstep-z2m-..."]
    lock                  the lock's friendly_name
    contact_sensor        [none] a contact sensor's friendly_name, for the door position
                          when the lock reports no `door_state` of its own
    require_availability  [true] the lock counts as offline until Zigbee2MQTT's
                          availability says online; set false only where availability
                          is disabled in Zigbee2MQTT
    command_timeout       [10.0] seconds a requested movement may take to be reported
    connect_timeout       [10.0] seconds `connect()` waits for the broker

Unknown keys are refused: they are typos, and a typo in a lock's config should not
silently fall back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BASE_TOPIC = "zigbee2mqtt"
DEFAULT_PORT = 1883
DEFAULT_COMMAND_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 10.0

BROKER_KEYS = frozenset({"host", "port", "username", "password", "base_topic", "client_id"})
LOCK_KEYS = frozenset(
    {"lock", "contact_sensor", "require_availability", "command_timeout", "connect_timeout"}
)


@dataclass(frozen=True, slots=True)
class Zigbee2MqttBroker:
    """Where the resident's Zigbee2MQTT publishes, and how to log in there."""

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    base_topic: str = DEFAULT_BASE_TOPIC
    client_id: str | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("zigbee2mqtt: host must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"zigbee2mqtt: not a TCP port: {self.port}")
        check_topic_part("base_topic", self.base_topic)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Zigbee2MqttBroker:
        """The broker keys of a config mapping; other keys are not looked at."""
        return cls(
            host=_required_str(config, "host"),
            port=_int(config, "port", DEFAULT_PORT),
            username=_optional_str(config, "username"),
            password=_optional_str(config, "password"),
            base_topic=_optional_str(config, "base_topic") or DEFAULT_BASE_TOPIC,
            client_id=_optional_str(config, "client_id"),
        )

    def topic(self, *parts: str) -> str:
        """`<base_topic>/<parts...>`."""
        return "/".join((self.base_topic, *parts))


@dataclass(frozen=True, slots=True)
class Zigbee2MqttSettings:
    """One lock, and its optional door contact sensor, on a Zigbee2MQTT broker."""

    broker: Zigbee2MqttBroker
    lock: str
    contact_sensor: str | None = None
    require_availability: bool = True
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        check_topic_part("lock", self.lock)
        if self.contact_sensor is not None:
            check_topic_part("contact_sensor", self.contact_sensor)
            if self.contact_sensor == self.lock:
                raise ValueError("zigbee2mqtt: contact_sensor must not be the lock itself")
        if self.command_timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("zigbee2mqtt: timeouts must be > 0")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Zigbee2MqttSettings:
        """Validate a whole config mapping (keys in the module docstring)."""
        check_known_keys(config)
        return cls(
            broker=Zigbee2MqttBroker.from_config(config),
            lock=_required_str(config, "lock"),
            contact_sensor=_optional_str(config, "contact_sensor"),
            require_availability=_bool(config, "require_availability", True),
            command_timeout=_float(config, "command_timeout", DEFAULT_COMMAND_TIMEOUT),
            connect_timeout=_float(config, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        )


def check_known_keys(config: Mapping[str, Any]) -> None:
    unknown = set(config) - BROKER_KEYS - LOCK_KEYS
    if unknown:
        raise ValueError(f"zigbee2mqtt: unknown config keys: {sorted(unknown)}")


def check_topic_part(key: str, value: str) -> None:
    """Refuse names that would reach other topics: a wildcard in a friendly name would
    subscribe to other devices, a leading or trailing slash to another tree."""
    if not value or any(char in value for char in "+#\0") or value != value.strip("/"):
        raise ValueError(f"zigbee2mqtt: {key} is not usable in a topic: {value!r}")


def _required_str(config: Mapping[str, Any], key: str) -> str:
    value = _optional_str(config, key)
    if not value:
        raise ValueError(f"zigbee2mqtt: {key} is required")
    return value


def _optional_str(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"zigbee2mqtt: {key} must be a string")
    return value


def _int(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"zigbee2mqtt: {key} must be an integer")
    return value


def _float(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"zigbee2mqtt: {key} must be a number")
    return float(value)


def _bool(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"zigbee2mqtt: {key} must be true or false")
    return value
