"""A hub restarted faster than its lock's motor: the process dies while the bolt is still
moving for an unlock it never heard the end of, and the next process finds the lock
reporting what it said before the movement (locked, shut). That word is no verification:
the entry stays open until the unlock reports (then the bolt is thrown again at once,
since nobody waits for that unlock any more) or until the relock deadline, by which any
motor has long stopped.

Unlike `Hub.restart`, the lock here outlives the hub: the same `SimulatedLock`, its motor
running on, serves the next process (`SimulatedLock.hub_process_died`). The clock is
moved by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from doorstep.hub.agent import RelockPolicy
from doorstep.hub.drivers.simulated import ManualScheduler
from doorstep.hub.lock import LockState
from doorstep.protocol.grants import new_token_id
from doorstep.protocol.messages import EventKind

if TYPE_CHECKING:
    from conftest import Hub

POLICY = RelockPolicy()
MOTOR_SECONDS = 1.0


def _moving(make_hub: Callable[..., Hub]) -> tuple[Hub, ManualScheduler]:
    """A hub whose lock takes a second to move and never relocks by itself."""
    clock = ManualScheduler()
    hub = make_hub(scheduler=clock, motor_seconds=MOTOR_SECONDS, auto_relock_seconds=None)
    return hub, clock


def _crash_and_boot(hub: Hub, clock: ManualScheduler) -> None:
    """The hub's process dies (nothing of it runs on) and a new one starts on the same
    journal and the same lock, as `HubAgent.start` would: `hub.started`, then `resume`."""
    hub.boot_after_crash(clock)
    hub.agent.record(EventKind.HUB_STARTED, {"epoch": hub.journal.epoch})
    hub.agent.resume()


def _secured(hub: Hub) -> list[str]:
    return [event.data["entry_id"] for event in hub.events(EventKind.ENTRY_SECURED)]


def _alerts(hub: Hub) -> list[str]:
    return [event.data["alert"] for event in hub.events(EventKind.ENTRY_ALERT)]


def _open_entries(hub: Hub) -> list[str]:
    return [visit[1] for visit in hub.journal.visits()]


def test_a_restart_mid_unlock_does_not_secure_the_entry_and_relocks_behind_the_unlock(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _moving(make_hub)
    hub.send(hub.command(hub.grant()))  # the bolt starts back; the hub dies before it reports

    _crash_and_boot(hub, clock)

    # The lock still says locked and shut: its word from before the movement.
    assert hub.lock.status().secure
    assert _secured(hub) == []
    assert _open_entries(hub) == [hub.entry_id]

    clock.advance(MOTOR_SECONDS)  # the unlock lands: nobody waits for it now
    [late] = [e for e in hub.events(EventKind.LOCK_UNLOCKED) if e.epoch == hub.journal.epoch]
    assert late.data["entry_id"] == hub.entry_id  # on record against its entry
    assert hub.lock.lock_calls == 1  # thrown again at once, not after `unopened_seconds`

    clock.advance(MOTOR_SECONDS)
    assert hub.lock.status().secure
    assert _secured(hub) == [hub.entry_id]
    assert _open_entries(hub) == []
    assert _alerts(hub) == []


def test_a_restart_mid_unlock_that_jams_relocks_and_secures(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _moving(make_hub)
    hub.send(hub.command(hub.grant()))
    _crash_and_boot(hub, clock)
    hub.lock.inject_jam(True)

    clock.advance(MOTOR_SECONDS)  # the unlock stalls half-way: the bolt is neither
    assert hub.lock.status().lock_state == LockState.NOT_FULLY_LOCKED
    assert _secured(hub) == []
    hub.lock.inject_jam(False)
    clock.advance(POLICY.retry_seconds + MOTOR_SECONDS)

    assert hub.lock.status().secure
    assert _secured(hub) == [hub.entry_id]
    assert _alerts(hub) == []


def test_a_restart_before_the_unlock_reached_the_lock_secures_at_the_relock_deadline(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _moving(make_hub)
    # The hub dies after journalling the entry (with its token) and before asking the
    # bolt to move: the bolt never moves, and no report will come.
    hub.journal.use_token(
        new_token_id(),
        expires=hub.now + 600,
        now=hub.now,
        visit=(hub.door, hub.entry_id, "cmd-never-sent"),
    )

    _crash_and_boot(hub, clock)
    clock.advance(POLICY.deadline_seconds - 0.1)
    assert _secured(hub) == []

    clock.advance(0.2)  # by now no motor can still be moving: the lock's word stands
    assert _secured(hub) == [hub.entry_id]
    assert _alerts(hub) == []
    assert (hub.lock.unlock_calls, hub.lock.actuations) == (0, 0)
