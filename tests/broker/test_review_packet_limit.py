"""The broker bounds what one client may publish: a hub owner who takes the broker
password off their own hub must not be able to park huge retained messages in the broker
(and its persistence) or push them at the service, exhausting memory for every home.

The largest message anyone sends on purpose is a desired document (the service's, at most
`MAX_DESIRED_BYTES`); a larger payload goes nowhere (at QoS 1 the broker answers it with
an error PUBACK).
"""

from __future__ import annotations

from doorstep.broker.config import MAX_PAYLOAD_BYTES
from doorstep.protocol.shadow import MAX_DESIRED_BYTES
from doorstep.protocol.topics import Topics


def test_an_oversized_publish_from_a_hub_is_neither_kept_nor_forwarded(
    service, hub_a, hub_passwords
) -> None:
    own = Topics(next(iter(hub_passwords)))
    service.subscribe(own.reported)

    # QoS 0: nothing comes back, so the session goes on; the sentinel is handled after it.
    hub_a.client.publish(own.reported, b"x" * (MAX_PAYLOAD_BYTES + 1), qos=0, retain=True)
    assert hub_a.publish(own.reported, b"sentinel") == "Success"

    assert service.next_message().payload == b"sentinel"
    service.subscribe(own.reported)  # a retained message would come again now
    hub_a.publish(own.reported, b"second sentinel")
    assert service.next_message().payload == b"second sentinel"


def test_the_largest_desired_document_still_reaches_its_hub(service, hub_a, hub_passwords) -> None:
    own = Topics(next(iter(hub_passwords)))
    document = b"d" * MAX_DESIRED_BYTES
    assert service.publish(own.desired, document, retain=True) != "Not authorized"

    hub_a.subscribe(own.desired)

    assert hub_a.next_message().payload == document
