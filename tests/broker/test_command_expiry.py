"""Commands carry their message expiry through the real broker, at every publish."""

from __future__ import annotations

from typing import Any

from doorstep.broker import Mosquitto
from doorstep.protocol import mqtt, topics


def test_every_command_carries_the_expiry(
    broker: Mosquitto, hub_a: Any, hub_passwords: dict[str, str]
) -> None:
    command_topic = topics.Topics(next(iter(hub_passwords))).cmd  # hub A's
    assert hub_a.subscribe(command_topic) == ["Granted QoS 1"]
    address = mqtt.BrokerAddress(
        broker.host, broker.port, broker.service_user, broker.service_password
    )
    service = mqtt.make_client("doorstep-service", address)
    mqtt.connect(service, address)
    try:
        properties = mqtt.expiring(30)  # built once, as the hub link builds it
        for number in range(3):  # packed once and reused: each must still carry it
            service.publish(command_topic, b"command %d" % number, qos=1, properties=properties)
            message = hub_a.next_message()
            assert message.payload == b"command %d" % number
            assert 0 < message.properties.MessageExpiryInterval <= 30
    finally:
        mqtt.close(service)
