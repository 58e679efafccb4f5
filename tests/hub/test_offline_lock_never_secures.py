"""Fail closed: an entry ends as secured only on the word of a lock that is online and
reports locked AND closed. A lock gone offline reports only its last-known state, which
is no verification: the entry stays open and the relock deadline raises the alarm, as
for any relock the hub could not verify. The clock is moved by hand."""

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
MOTOR_SECONDS = 1.0


def _secured(hub: Hub) -> list[str]:
    return [event.data["entry_id"] for event in hub.events(EventKind.ENTRY_SECURED)]


def _alerts(hub: Hub) -> list[str]:
    return [event.data["alert"] for event in hub.events(EventKind.ENTRY_ALERT)]


def _entered(make_hub: Callable[..., Hub]) -> tuple[Hub, ManualScheduler]:
    clock = ManualScheduler()
    hub = make_hub(scheduler=clock, motor_seconds=MOTOR_SECONDS, auto_relock_seconds=None)
    hub.send(hub.command(hub.grant()))
    clock.advance(MOTOR_SECONDS)
    assert hub.lock.status().lock_state == LockState.UNLOCKED
    hub.lock.open_door()
    return hub, clock


def test_a_lock_that_goes_offline_while_relocking_does_not_secure_the_entry(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _entered(make_hub)
    hub.lock.close_door()  # the hub relocks; the motor runs
    hub.lock.set_online(False)  # the radio drops before the hub hears back

    clock.advance(MOTOR_SECONDS)  # the last word before it dropped: locked, closed
    status = hub.lock.status()
    assert (status.lock_state, status.door_state, status.online) == (
        LockState.LOCKED,
        DoorState.CLOSED,
        False,
    )
    assert _secured(hub) == []
    assert not status.secure

    clock.advance(POLICY.deadline_seconds)
    assert _alerts(hub) == [Alert.RELOCK_FAILED]
    assert [visit[1] for visit in hub.journal.visits()] == [hub.entry_id]  # still open


def test_a_door_closed_on_a_bolt_thrown_by_hand_while_offline_is_not_secured(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _entered(make_hub)
    hub.lock.manual_lock()  # thrown by hand with the door open: an alarm, not an end
    hub.lock.set_online(False)

    hub.lock.close_door()

    assert _secured(hub) == []
    clock.advance(POLICY.deadline_seconds)
    assert Alert.RELOCK_FAILED in _alerts(hub)  # unverified: raised as a failed relock


def test_a_restart_with_the_lock_offline_does_not_secure_the_entry(
    make_hub: Callable[..., Hub],
) -> None:
    clock = ManualScheduler()
    hub = make_hub(scheduler=clock, auto_relock_seconds=None)
    hub.send(hub.command(hub.grant()))

    hub.restart(scheduler=clock, auto_relock_seconds=None)  # its last state: locked, closed
    hub.lock.set_online(False)
    hub.agent.resume()

    assert _secured(hub) == []
    clock.advance(POLICY.deadline_seconds)
    assert _alerts(hub) == [Alert.RELOCK_FAILED]
    assert [visit[1] for visit in hub.journal.visits()] == [hub.entry_id]


def test_a_lock_back_online_with_its_bolt_thrown_secures_the_entry_at_the_next_look(
    make_hub: Callable[..., Hub],
) -> None:
    """It reports no change (its bolt never moved again), so only the hub's next look at
    it ends the entry; until then the entry stays open and alarmed."""
    hub, clock = _entered(make_hub)
    hub.lock.close_door()
    hub.lock.set_online(False)
    clock.advance(MOTOR_SECONDS)
    clock.advance(POLICY.deadline_seconds)
    assert _alerts(hub) == [Alert.RELOCK_FAILED]

    clock.advance(POLICY.recheck_seconds)  # still offline: still open, alarmed once
    assert _secured(hub) == []
    assert _alerts(hub) == [Alert.RELOCK_FAILED]

    hub.lock.set_online(True)
    assert _secured(hub) == []  # no report came
    clock.advance(POLICY.recheck_seconds)

    assert _secured(hub) == [hub.entry_id]
    assert hub.journal.visits() == []
