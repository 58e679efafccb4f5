"""A hub restarted mid-entry whose door sensor does not know where the door is (a sleepy
Zigbee contact sensor reads unknown until it first reports, which may take hours).

A deadbolt is thrown only into a shut door. An entry that never opened the door left it
shut when the bolt was drawn, and nobody was seen opening it since: the hub relocks at
once and watches that relock (unverified until the sensor says shut: `relock_failed` at
the deadline). An entry that did open it may have left it standing open: the hub does
not throw the bolt blind, and relocks once the sensor reports the door closed.

The lock outlives the hub (`SimulatedLock.hub_process_died`); its sensor goes quiet
while the hub is down. The clock is moved by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from doorstep.hub.agent import RelockPolicy
from doorstep.hub.drivers.simulated import ManualScheduler
from doorstep.hub.lock import DoorState, LockState
from doorstep.protocol.messages import Alert, EventKind

if TYPE_CHECKING:
    from conftest import Hub

POLICY = RelockPolicy()


def _unlocked(make_hub: Callable[..., Hub]) -> Hub:
    """A hub that let an entry in; its lock moves at once and never relocks by itself."""
    hub = make_hub(auto_relock_seconds=None)
    hub.send(hub.command(hub.grant()))
    assert hub.lock.status().lock_state == LockState.UNLOCKED
    return hub


def _crash_and_boot_without_the_sensor(hub: Hub) -> ManualScheduler:
    """The hub's process dies, the door sensor goes quiet meanwhile, and a new process
    starts on the same journal and lock, as `HubAgent.start` would: `resume`. Returns
    the new process's clock (the dead one's timers never run)."""
    clock = ManualScheduler()
    hub.lock.hub_process_died()  # first: the dead process must not hear the sensor go quiet
    hub.lock.lose_door_sensor(True)
    hub.boot_after_crash(clock)
    hub.agent.resume()
    assert hub.lock.status().door_state == DoorState.UNSPECIFIED_ERROR
    return clock


def _alerts(hub: Hub) -> list[str]:
    return [event.data["alert"] for event in hub.events(EventKind.ENTRY_ALERT)]


def _secured(hub: Hub) -> list[str]:
    return [event.data["entry_id"] for event in hub.events(EventKind.ENTRY_SECURED)]


def test_an_unopened_entry_is_relocked_at_once_though_the_sensor_is_silent(
    make_hub: Callable[..., Hub],
) -> None:
    hub = _unlocked(make_hub)  # nobody opens the door

    clock = _crash_and_boot_without_the_sensor(hub)

    assert hub.lock.lock_calls == 1
    assert hub.lock.status().lock_state == LockState.LOCKED
    assert _secured(hub) == []  # a bolt without a sensor's word verifies nothing
    clock.advance(POLICY.deadline_seconds)
    assert _alerts(hub) == [Alert.RELOCK_FAILED]  # the resident is told to check the door

    hub.lock.lose_door_sensor(False)  # the sensor reports at last: shut
    assert _secured(hub) == [hub.entry_id]
    assert hub.journal.visits() == []


def test_an_opened_entry_is_not_relocked_blind_and_is_once_the_door_reads_shut(
    make_hub: Callable[..., Hub],
) -> None:
    hub = _unlocked(make_hub)
    hub.lock.open_door()  # the courier goes in

    clock = _crash_and_boot_without_the_sensor(hub)
    clock.advance(POLICY.door_open_seconds)

    assert hub.lock.lock_calls == 0  # maybe still open: no bolt thrown into the frame
    assert _alerts(hub) == [Alert.DOOR_HELD_OPEN]
    hub.lock.close_door()  # nobody hears it: the sensor is silent
    hub.lock.lose_door_sensor(False)  # until it reports: shut

    assert hub.lock.lock_calls == 1
    assert hub.lock.status().secure
    assert _secured(hub) == [hub.entry_id]
