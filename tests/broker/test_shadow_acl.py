"""The shadow topics on a real Mosquitto: retained documents reach only their own hub.

`desired` is retained, so a hub gets its document the moment it subscribes, and so
would any other client the ACL let read it: retained messages are filtered at delivery
like live ones. `reported` is retained too, for the service to read on (re)connect.
"""

from __future__ import annotations

from doorstep.protocol.topics import Topics


def test_a_retained_desired_document_reaches_its_hub_on_subscribe(
    service, hub_a, hub_passwords
) -> None:
    own = Topics(next(iter(hub_passwords)))
    assert service.publish(own.desired, b'{"version": 1}', retain=True) != "Not authorized"

    hub_a.subscribe(own.desired)

    message = hub_a.next_message()
    assert (message.topic, message.payload, message.retain) == (
        own.desired,
        b'{"version": 1}',
        True,
    )


def test_another_hub_never_reads_a_retained_desired_document(
    service, connect, hub_passwords
) -> None:
    own, other = (Topics(hub) for hub in hub_passwords)
    service.publish(own.desired, b"hub A's codes", retain=True)
    hub_b = connect(other.hub_id, hub_passwords[other.hub_id])

    hub_b.subscribe(own.desired)
    hub_b.subscribe("doorstep/hubs/+/desired")
    hub_b.subscribe(other.cmd)
    service.publish(other.cmd, b"sentinel")

    assert hub_b.topics_before(other.cmd, b"sentinel") == []


def test_a_hub_retains_its_report_for_the_service(service, hub_a, hub_passwords) -> None:
    own = Topics(next(iter(hub_passwords)))
    assert hub_a.publish(own.reported, b'{"version": 1}', retain=True) != "Not authorized"

    service.subscribe(own.reported)

    message = service.next_message()
    assert (message.topic, message.payload, message.retain) == (
        own.reported,
        b'{"version": 1}',
        True,
    )
