"""A hub that starts while its broker is out of reach (the home's internet down at
power-up, the service away) goes on: it journals what its lock reports, keeps trying,
and sends it all once connected. Before, it gave up after 10 s and the process exited.
While disconnected it does not pile up a copy of every unacknowledged event each resend
round, to send them all at once when it connects."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.broker import Mosquitto
from doorstep.hub.agent import HubAgent
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.protocol import topics
from doorstep.protocol.grants import GrantVerifier
from doorstep.protocol.messages import Event, EventKind
from doorstep.protocol.mqtt import BrokerAddress
from polling import wait_until

DOOR = "front"
HUB_A = "hub-3f9a1c2b"  # conftest's first hub


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubAgent]:
    journal = Journal(tmp_path / "journal.sqlite3", hub_id=HUB_A,
                      signing_key=Ed25519PrivateKey.generate())  # fmt: skip
    agent = HubAgent(
        hub_id=HUB_A,
        journal=journal,
        locks={DOOR: SimulatedLock(motor_seconds=0)},
        verifier=GrantVerifier(hub_id=HUB_A, issuer_keys={}, clock=time.time),
        clock=time.time,
    )
    yield agent
    agent.stop()


def test_a_hub_started_without_its_broker_goes_on_and_sends_what_it_journaled(
    hub: HubAgent,
    broker: Mosquitto,
    hub_passwords: dict[str, str],
    hub_hashes: dict[str, str],
    connect: Callable[..., Any],
) -> None:
    broker.stop()
    hub.start(BrokerAddress(broker.host, broker.port, HUB_A, hub_passwords[HUB_A]))
    lock = hub.locks[DOOR]
    assert isinstance(lock, SimulatedLock)
    lock.open_door()
    lock.close_door()
    journaled = [event.kind for event in hub.journal.unacknowledged()]
    assert EventKind.DOOR_OPENED in journaled and EventKind.DOOR_CLOSED in journaled

    hub._resend()  # a resend round while disconnected queues nothing
    queued = len(hub._client._out_messages)  # type: ignore[union-attr]
    hub._resend()
    assert len(hub._client._out_messages) == queued  # type: ignore[union-attr]

    broker.start(hub_hashes)
    service = connect(broker.service_user, broker.service_password)
    assert service.subscribe(topics.Topics(HUB_A).events) == ["Granted QoS 1"]
    seen: set[str] = set()

    def both_doors_seen() -> bool:
        while not service.messages.empty():
            seen.add(Event.model_validate_json(service.messages.get().payload).kind)
        return {EventKind.DOOR_OPENED, EventKind.DOOR_CLOSED} <= seen

    wait_until(both_doors_seen, 20, "the events journaled offline, sent once connected")
