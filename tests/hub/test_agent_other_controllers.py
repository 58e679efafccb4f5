"""Another controller's command on the same lock (a Matter lock's other fabrics: Apple
Home, Google Home, another Home Assistant) is never the outcome of the hub's own.

The Matter driver marks such an event `other_controller`; the agent must not answer a
courier's unlock with it, nor settle a remote lock with it. A stand-in driver reports
exactly what the test tells it to, as a lock whose own answer is still on its way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from doorstep.hub.drivers.simulated import ManualScheduler
from doorstep.hub.lock import (
    DoorState,
    LockEvent,
    LockOperation,
    LockOperationType,
    LockState,
    LockStatus,
    OperationSource,
)
from doorstep.protocol.messages import EventKind, Reply

if TYPE_CHECKING:
    from conftest import Hub

UNLOCK, REMOTE = LockOperationType.UNLOCK, OperationSource.REMOTE


class AnsweringLater:
    """A lock that takes requests and reports only what `report` is given."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.state = LockState.LOCKED
        self._callbacks: list[Callable[[LockEvent], None]] = []

    def status(self) -> LockStatus:
        return LockStatus(
            online=True,
            lock_state=self.state,
            door_state=DoorState.CLOSED,
            battery_percent=100,
            jammed=False,
        )

    def unlock(self, source: OperationSource) -> None:
        self.requests.append("unlock")

    def lock(self, source: OperationSource) -> None:
        self.requests.append("lock")

    def subscribe(self, callback: Callable[[LockEvent], None]) -> None:
        self._callbacks.append(callback)

    def close(self) -> None:
        pass

    def report(self, event: LockEvent) -> None:
        if isinstance(event, LockOperation):
            self.state = LockState.UNLOCKED if event.operation == UNLOCK else LockState.LOCKED
        for callback in self._callbacks:
            callback(event)


def test_another_controllers_unlock_does_not_answer_the_couriers(hub: Hub) -> None:
    driver = AnsweringLater()
    hub.boot_after_crash(ManualScheduler(), driver=driver)  # the hub, on this driver
    hub.agent.resume()
    command = hub.command(hub.grant())
    assert hub.send(command) is None  # the bolt is on its way: the reply follows the lock
    assert driver.requests == ["unlock"]

    driver.report(LockOperation(UNLOCK, REMOTE, other_controller=True))
    assert hub.stored_reply(command.command_id) is None  # not the hub's unlock
    unlocked = hub.events(EventKind.LOCK_UNLOCKED)
    assert [event.data.get("other_controller") for event in unlocked] == [True]

    driver.report(LockOperation(UNLOCK, REMOTE))  # the hub's own
    reply = hub.stored_reply(command.command_id)
    assert reply is not None
    assert isinstance(reply, Reply)
    assert reply.result == "ok"
