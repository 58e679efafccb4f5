"""Entries end with the door relocked: across a hub restart mid-entry (the entry in
progress is journalled before the bolt moves, and its recording goes on in the window
the camera kept) and when nobody went in (auto-relock)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from doorstep.hub.drivers.simulated import ManualScheduler
from doorstep.hub.lock import LockState, OperationError, OperationSource
from doorstep.protocol.messages import EventKind
from doorstep.video.camera import SimulatedCamera
from polling import wait_until

if TYPE_CHECKING:
    from conftest import Hub


def _recorded_entry(make_hub: Callable[..., Hub], camera: SimulatedCamera) -> Hub:
    """A hub whose camera went live, and an entry it unlocked."""
    hub = make_hub(camera_url=camera.url)
    recorder = hub.agent.cameras[hub.door]
    wait_until(lambda: recorder.liveness().live, 20, "the camera to go live")
    hub.send(hub.command(hub.grant()))
    assert hub.lock.unlock_calls == 1
    return hub


def _secured(hub: Hub) -> list[str]:
    return [event.data["entry_id"] for event in hub.events(EventKind.ENTRY_SECURED)]


def test_restart_with_the_door_open_relocks_when_it_closes(hub: Hub) -> None:
    hub.send(hub.command(hub.grant()))
    assert hub.lock.unlock_calls == 1
    hub.lock.open_door()

    hub.restart()
    # The real lock kept its state across the hub's restart: bolt back, door open.
    hub.lock.manual_unlock()
    hub.lock.open_door()
    hub.lock.close_door()

    assert hub.lock.lock_calls == 1
    assert hub.lock.status().secure
    assert _secured(hub) == [hub.entry_id]


def _restart_as_a_hub_starts(hub: Hub) -> None:
    hub.restart()
    # What `HubAgent.start` records first, so the new boot's events are numbered on from it.
    hub.agent.record(EventKind.HUB_STARTED, {"epoch": hub.journal.epoch})


def test_restart_before_the_door_opened_keeps_the_unlock_answered(hub: Hub) -> None:
    # The hub answered the unlock, then restarted before anyone opened the door. The bolt
    # moving again during that entry (a hand on the thumb-turn) is no second answer.
    command = hub.command(hub.grant())
    hub.send(command)
    answered = hub.stored_reply(command.command_id)
    assert answered is not None and answered.result == "ok"

    _restart_as_a_hub_starts(hub)
    hub.lock.manual_unlock()

    first, again = hub.events(EventKind.LOCK_UNLOCKED)
    assert answered.seqs == [first.seq]
    assert (again.epoch, again.data["entry_id"]) == (hub.journal.epoch, hub.entry_id)
    assert hub.stored_reply(command.command_id) == answered
    hub.lock.open_door()
    hub.lock.close_door()
    assert _secured(hub) == [hub.entry_id]


def test_restart_before_the_door_opened_keeps_the_entry_on_a_failed_turn(hub: Hub) -> None:
    # After a restart, an unlock the lock fails is not the answered unlock failing: the
    # entry stays open, and is secured when the door shuts.
    command = hub.command(hub.grant())
    hub.send(command)
    answered = hub.stored_reply(command.command_id)

    _restart_as_a_hub_starts(hub)
    hub.lock.set_battery(0)
    hub.lock.unlock(OperationSource.BUTTON)  # the lock's own button, on a flat battery
    hub.lock.set_battery(100)

    assert [event.data["error"] for event in hub.events(EventKind.LOCK_ERROR)] == [
        int(OperationError.INSUFFICIENT_BATTERY)
    ]
    assert hub.stored_reply(command.command_id) == answered
    assert [visit[1] for visit in hub.journal.visits()] == [hub.entry_id]
    hub.lock.manual_unlock()  # the bolt is back, as the hub left it
    hub.lock.open_door()
    hub.lock.close_door()
    assert _secured(hub) == [hub.entry_id]


def test_restart_while_the_unlock_moved_relocks_when_the_door_closes(
    make_hub: Callable[..., Hub],
) -> None:
    hub = make_hub(scheduler=ManualScheduler(), motor_seconds=1.0)
    hub.send(hub.command(hub.grant()))  # the hub dies before the lock reports

    hub.restart()
    hub.lock.manual_unlock()  # the motor finished while the hub was down
    hub.lock.open_door()
    hub.agent.resume()
    hub.lock.close_door()

    assert hub.lock.status().secure
    assert _secured(hub) == [hub.entry_id]


def test_restart_after_the_door_closed_relocks_at_once(hub: Hub) -> None:
    hub.send(hub.command(hub.grant()))
    hub.restart()
    hub.lock.manual_unlock()  # the bolt is still back; the door closed while the hub was down

    hub.agent.resume()

    assert hub.lock.lock_calls == 1
    assert hub.lock.status().secure
    assert _secured(hub) == [hub.entry_id]


def test_restart_after_a_finished_entry_does_nothing(hub: Hub) -> None:
    hub.send(hub.command(hub.grant()))
    hub.lock.open_door()
    hub.lock.close_door()
    assert _secured(hub) == [hub.entry_id]

    hub.restart()
    hub.agent.resume()

    assert hub.lock.lock_calls == 0
    assert hub.lock.unlock_calls == 0
    assert _secured(hub) == [hub.entry_id]


def test_auto_relock_before_anyone_went_in_secures_without_opening(
    make_hub: Callable[..., Hub],
) -> None:
    scheduler = ManualScheduler()
    hub = make_hub(scheduler=scheduler, auto_relock_seconds=30)
    hub.send(hub.command(hub.grant()))
    assert hub.lock.status().lock_state == LockState.UNLOCKED

    scheduler.advance(30)

    assert hub.lock.status().secure
    secured = hub.events(EventKind.ENTRY_SECURED)
    assert [(e.data["entry_id"], e.data["opened"]) for e in secured] == [(hub.entry_id, False)]


def test_an_entry_that_went_in_is_secured_as_opened(hub: Hub) -> None:
    hub.send(hub.command(hub.grant()))
    hub.lock.open_door()
    hub.lock.close_door()
    assert [e.data["opened"] for e in hub.events(EventKind.ENTRY_SECURED)] == [True]


@pytest.mark.slow
def test_restart_mid_entry_records_the_rest_of_the_entry(
    make_hub: Callable[..., Hub], camera: SimulatedCamera
) -> None:
    hub = _recorded_entry(make_hub, camera)
    hub.lock.open_door()
    recorder = hub.agent.cameras[hub.door]
    recording = recorder.liveness().frames
    wait_until(lambda: recorder.liveness().frames > recording + 15, 20, "a second of entry")

    restarted_at = time.time()
    hub.restart()  # a new recorder: the old one kept the entry's window
    hub.lock.manual_unlock()
    hub.lock.open_door()
    hub.agent.resume()
    hub.lock.close_door()

    assert _secured(hub) == [hub.entry_id]
    clips = wait_until(lambda: hub.events(EventKind.CLIP_RECORDED), 20, "the entry's clip")
    # One clip for the whole entry: from before the unlock, across the restart.
    assert [clip.data["entry_id"] for clip in clips] == [hub.entry_id]
    assert clips[0].data["started_at"] < restarted_at - 1.0
    assert clips[0].data["ended_at"] > restarted_at
    assert clips[0].data["complete"] is False  # the restart is a gap in it


@pytest.mark.slow
def test_restart_finds_the_entry_secured_and_starts(
    make_hub: Callable[..., Hub], camera: SimulatedCamera
) -> None:
    hub = _recorded_entry(make_hub, camera)
    armed_at = time.time()

    hub.restart()  # the door stayed shut and the (new) lock reports locked
    hub.agent.resume()

    assert _secured(hub) == [hub.entry_id]
    assert hub.journal.visits() == []
    clips = wait_until(lambda: hub.events(EventKind.CLIP_RECORDED), 20, "the entry's clip")
    assert [clip.data["entry_id"] for clip in clips] == [hub.entry_id]
    assert clips[0].data["started_at"] < armed_at


@pytest.mark.slow
def test_a_recording_left_open_for_an_ended_entry_is_closed_at_start(
    make_hub: Callable[..., Hub], camera: SimulatedCamera
) -> None:
    hub = _recorded_entry(make_hub, camera)
    armed_at = time.time()
    # The hub stops after the entry's end was journalled but before its recording was
    # closed: the camera kept a window that no open entry claims.
    hub.journal.drop_visit(hub.door)

    hub.restart()
    hub.agent.resume()

    clips = wait_until(lambda: hub.events(EventKind.CLIP_RECORDED), 20, "the entry's clip")
    assert [clip.data["entry_id"] for clip in clips] == [hub.entry_id]
    assert clips[0].data["started_at"] < armed_at
    assert hub.agent.cameras[hub.door].restored() == []
