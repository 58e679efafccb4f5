"""The relock is verified, retried and, when it fails, raised as an alarm: a jam on
relock, a door left open, a bolt thrown while the door stands open, a door unlocked that
nobody opens. The lock and the
agent share a hand-moved clock, so every deadline is stepped through without sleeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from doorstep.hub.agent import RelockPolicy
from doorstep.hub.drivers.simulated import ManualScheduler
from doorstep.hub.lock import LockState
from doorstep.protocol.messages import Alert, EventKind

if TYPE_CHECKING:
    from conftest import Hub

POLICY = RelockPolicy()


def _entered(make_hub: Callable[..., Hub], **lock: Any) -> tuple[Hub, ManualScheduler]:
    """An entry unlocked and the door opened (motor 0 s, so moves finish at once)."""
    clock = ManualScheduler()
    hub = make_hub(scheduler=clock, auto_relock_seconds=None, **lock)
    hub.send(hub.command(hub.grant()))
    assert hub.lock.unlock_calls == 1
    hub.lock.open_door()
    return hub, clock


def _alerts(hub: Hub) -> list[str]:
    return [event.data["alert"] for event in hub.events(EventKind.ENTRY_ALERT)]


def _secured(hub: Hub) -> bool:
    return bool(hub.events(EventKind.ENTRY_SECURED))


def test_a_jam_on_relock_is_retried_and_the_entry_ends_when_it_locks(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _entered(make_hub)
    hub.lock.inject_jam(True)
    hub.lock.close_door()  # the hub relocks on close; the bolt jams
    assert hub.lock.status().jammed and not _secured(hub)
    hub.lock.inject_jam(False)  # the jam clears (the courier pushed the door home)
    clock.advance(POLICY.retry_seconds)
    assert hub.lock.status().secure
    assert _secured(hub)
    assert _alerts(hub) == []


def test_a_relock_that_never_succeeds_raises_relock_failed_at_the_deadline(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _entered(make_hub)
    hub.lock.inject_jam(True)
    hub.lock.close_door()
    clock.advance(POLICY.deadline_seconds - 0.1)
    assert _alerts(hub) == []
    assert hub.lock.lock_calls == 1 + POLICY.retries  # the first try and every retry
    clock.advance(0.2)
    assert _alerts(hub) == [Alert.RELOCK_FAILED]
    assert not _secured(hub)
    clock.advance(POLICY.deadline_seconds * 3)
    assert _alerts(hub) == [Alert.RELOCK_FAILED]  # raised once per entry


def test_a_door_left_open_raises_door_held_open(make_hub: Callable[..., Hub]) -> None:
    hub, clock = _entered(make_hub)
    clock.advance(POLICY.door_open_seconds - 1)
    assert _alerts(hub) == []
    clock.advance(2)
    assert _alerts(hub) == [Alert.DOOR_HELD_OPEN]
    hub.lock.close_door()  # closed at last: the relock and the end follow as usual
    assert _secured(hub)


def test_closing_in_time_raises_nothing(make_hub: Callable[..., Hub]) -> None:
    hub, clock = _entered(make_hub)
    clock.advance(POLICY.door_open_seconds / 2)
    hub.lock.close_door()
    clock.advance(POLICY.door_open_seconds + POLICY.deadline_seconds)
    assert _secured(hub) and _alerts(hub) == []


def test_a_bolt_thrown_while_the_door_is_open_is_an_alarm_not_an_end(
    make_hub: Callable[..., Hub],
) -> None:
    hub, _clock = _entered(make_hub)
    hub.lock.manual_lock()  # the thumb-turn, with the door standing open
    assert _alerts(hub) == [Alert.LOCKED_WHILE_OPEN]
    assert not _secured(hub)
    alert = hub.events(EventKind.ENTRY_ALERT)[0]
    assert alert.data["entry_id"] == hub.entry_id
    hub.lock.close_door()
    assert _secured(hub)  # locked and closed: now it ends


def _unlocked(make_hub: Callable[..., Hub], **lock: Any) -> tuple[Hub, ManualScheduler]:
    """An entry unlocked by a lock that never relocks by itself; the door stays shut."""
    clock = ManualScheduler()
    hub = make_hub(scheduler=clock, auto_relock_seconds=None, **lock)
    hub.send(hub.command(hub.grant()))
    assert hub.lock.status().lock_state == LockState.UNLOCKED
    return hub, clock


def test_an_unlocked_door_nobody_opens_is_relocked(make_hub: Callable[..., Hub]) -> None:
    hub, clock = _unlocked(make_hub)
    clock.advance(POLICY.unopened_seconds - 0.1)
    assert hub.lock.lock_calls == 0
    clock.advance(0.2)
    assert hub.lock.status().secure
    secured = hub.events(EventKind.ENTRY_SECURED)
    assert [(e.data["entry_id"], e.data["opened"]) for e in secured] == [(hub.entry_id, False)]
    assert _alerts(hub) == []


def test_an_unopened_door_that_will_not_relock_raises_relock_failed(
    make_hub: Callable[..., Hub],
) -> None:
    hub, clock = _unlocked(make_hub)
    hub.lock.inject_jam(True)
    clock.advance(POLICY.unopened_seconds + POLICY.deadline_seconds)
    assert hub.lock.lock_calls == 1 + POLICY.retries
    assert _alerts(hub) == [Alert.RELOCK_FAILED]


def test_a_door_opened_is_not_relocked_for_being_unopened(make_hub: Callable[..., Hub]) -> None:
    hub, clock = _entered(make_hub)
    clock.advance(POLICY.unopened_seconds)
    assert hub.lock.lock_calls == 0


def test_a_relock_the_radio_did_not_carry_is_retried(make_hub: Callable[..., Hub]) -> None:
    hub, clock = _entered(make_hub)
    hub.lock.set_online(False)
    hub.lock.close_door()  # the relock request cannot be sent
    hub.lock.set_online(True)
    assert not _secured(hub)

    clock.advance(POLICY.retry_seconds)

    assert hub.lock.status().secure
    assert _secured(hub)
    assert _alerts(hub) == []


def test_a_lock_out_of_reach_through_every_retry_is_relocked_once_reachable(
    make_hub: Callable[..., Hub],
) -> None:
    """The radio drops as the courier shuts the door, for longer than the retries last.
    The lock comes back, its bolt still drawn: the hub's next look throws it, rather
    than only watching an unlocked door it could lock."""
    hub, clock = _entered(make_hub)
    hub.lock.set_online(False)
    hub.lock.close_door()  # the relock cannot be sent, nor can any retry
    clock.advance(POLICY.retry_seconds * (POLICY.retries + 1))
    assert hub.lock.lock_calls == 1 + POLICY.retries
    hub.lock.set_online(True)  # back, and reporting nothing new: the bolt never moved

    clock.advance(POLICY.deadline_seconds)

    assert _alerts(hub) == [Alert.RELOCK_FAILED]  # late, so raised all the same
    assert hub.lock.status().secure
    assert _secured(hub)
