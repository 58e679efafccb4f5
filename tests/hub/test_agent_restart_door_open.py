"""A hub restarted mid-entry with the door standing open raises `door_held_open` when the
door has been open `door_open_seconds`, counted from when it opened (kept in the
journal with the entry), not from the restart: at once if that time is already past.

The lock outlives the hub (`SimulatedLock.hub_process_died`). The agent's wall clock is
`hub.now`, set by hand; its timers run on a `ManualScheduler`; see conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from doorstep.hub.agent import RelockPolicy
from doorstep.hub.drivers.simulated import ManualScheduler
from doorstep.protocol.messages import Alert, EventKind

if TYPE_CHECKING:
    from conftest import Hub

POLICY = RelockPolicy()
LIMIT = POLICY.door_open_seconds


def _unlocked(make_hub: Callable[..., Hub]) -> tuple[Hub, ManualScheduler]:
    """A hub on a wall clock the test sets (`hub.now`) that let an entry in."""
    hub = make_hub(auto_relock_seconds=None)
    clock = _crash_and_boot_at(hub, hub.now)
    hub.send(hub.command(hub.grant()))
    assert hub.lock.unlock_calls == 1
    return hub, clock


def _crash_and_boot_at(hub: Hub, now: float) -> ManualScheduler:
    """The hub's process dies and a new one starts at `now`, as `HubAgent.start` would:
    `resume`. Returns the new process's timers (the dead one's never run)."""
    clock = ManualScheduler()
    hub.now = now
    hub.boot_after_crash(clock)
    hub.agent.resume()
    return clock


def _alerts(hub: Hub) -> list[str]:
    return [event.data["alert"] for event in hub.events(EventKind.ENTRY_ALERT)]


def test_door_held_open_counts_from_the_opening_across_a_restart(
    make_hub: Callable[..., Hub],
) -> None:
    hub, _ = _unlocked(make_hub)
    opened_at = hub.now
    hub.lock.open_door()  # the courier goes in, and the hub restarts 90 s later

    clock = _crash_and_boot_at(hub, opened_at + 90)
    clock.advance(LIMIT - 90 - 1)
    assert _alerts(hub) == []
    clock.advance(1)

    assert _alerts(hub) == [Alert.DOOR_HELD_OPEN]


def test_a_door_open_past_the_limit_before_a_restart_is_raised_at_once(
    make_hub: Callable[..., Hub],
) -> None:
    hub, _ = _unlocked(make_hub)
    opened_at = hub.now
    hub.lock.open_door()

    clock = _crash_and_boot_at(hub, opened_at + LIMIT + 300)
    clock.advance(0)

    assert _alerts(hub) == [Alert.DOOR_HELD_OPEN]


def test_a_door_opened_again_counts_from_its_last_opening_across_a_restart(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _unlocked(make_hub)
    hub.lock.open_door()
    hub.now += 60
    hub.lock.inject_jam(True)
    hub.lock.close_door()  # the relock jams: the entry stays open
    hub.now += 60
    reopened_at = hub.now
    hub.lock.open_door()  # opened again, 120 s after it first opened
    assert _alerts(hub) == []

    clock = _crash_and_boot_at(hub, reopened_at + 30)
    clock.advance(LIMIT - 30 - 1)
    assert _alerts(hub) == []
    clock.advance(1)

    assert _alerts(hub) == [Alert.DOOR_HELD_OPEN]
