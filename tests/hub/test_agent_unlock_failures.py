"""An unlock that does not happen as asked still ends where DESIGN principle 1 wants it:
the door locked, the courier answered with the reason that tells them what to do, and
the door free for the next entry, or watched until the hub knows where the bolt is.

- A request the radio cannot carry (the driver raises LockError) never reached the
  motor: `lock_not_ready`, as for a lock known to be offline.
- A camera that cannot record refuses the unlock (camera first), answered and freed.
- An unlock the driver reports failed for no stated reason may have been cut off on the
  way back (the Matter and Zigbee2MQTT drivers report one they heard nothing of in time
  as failed) and may still land: its entry stays open, and the bolt is thrown again the
  moment it does.

The hub here drives its `SimulatedLock` through a stand-in for what fails (a radio, a
driver that lost the answer, a recorder), passed in as a real driver or camera would be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lock_stand_ins import RadioJustFailed

from doorstep.hub.agent import RelockPolicy
from doorstep.hub.camera import EntryCamera
from doorstep.hub.drivers.simulated import ManualScheduler, SimulatedLock
from doorstep.hub.lock import (
    LockDriver,
    LockEvent,
    LockOperationError,
    LockOperationType,
    LockStatus,
    OperationError,
    OperationSource,
)
from doorstep.protocol import Reason
from doorstep.protocol.codes import COURIER_ADVICE
from doorstep.protocol.messages import EventKind, Reply
from doorstep.video.clips import Clip
from doorstep.video.errors import VideoError
from doorstep.video.liveness import CameraState, Liveness

if TYPE_CHECKING:
    from conftest import Hub

POLICY = RelockPolicy()
MOTOR_SECONDS = 1.0


class _AnswerLost:
    """A driver that lost the answer to an unlock (the link dropped, or no report came
    in time) and reports it failed for no stated reason, as the Matter and Zigbee2MQTT
    drivers do. `reached` says whether the request got to the lock before the loss: if
    it did, the motor runs on and the lock reports the unlock when it lands."""

    def __init__(self, lock: SimulatedLock, *, reached: bool) -> None:
        self._lock = lock
        self._reached = reached
        self._subscribers: list[Callable[[LockEvent], None]] = []

    def status(self) -> LockStatus:
        return self._lock.status()

    def unlock(self, source: OperationSource) -> None:
        if self._reached:
            self._lock.unlock(source)
        lost = LockOperationError(LockOperationType.UNLOCK, source, OperationError.UNSPECIFIED)
        for callback in self._subscribers:
            callback(lost)

    def lock(self, source: OperationSource) -> None:
        self._lock.lock(source)

    def subscribe(self, callback: Callable[[LockEvent], None]) -> None:
        self._subscribers.append(callback)
        self._lock.subscribe(callback)

    def close(self) -> None:
        self._lock.close()


class _CameraThatCannotRecord:
    """A camera whose picture is live but whose recorder refuses to open an entry's
    window (its disk full, its ffmpeg gone between two heartbeats) until `fixed`."""

    def __init__(self) -> None:
        self.fixed = False
        self.armed: list[str] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def liveness(self) -> Liveness:
        return Liveness(CameraState.LIVE, 100, 10, "0123456789abcdef", 0.1, 0.0)

    def watch(self, callback: Callable[[Liveness], None]) -> None:
        pass

    def watch_clips(self, callback: Callable[[Clip], None]) -> None:
        pass

    def restored(self) -> list[str]:
        return []

    def arm(self, entry_id: str) -> None:
        if not self.fixed:
            raise VideoError("the recorder is not running")
        self.armed.append(entry_id)

    def disarm(self, entry_id: str) -> None:
        if entry_id not in self.armed:
            raise VideoError(f"entry {entry_id} is not armed")
        self.armed.remove(entry_id)


def _drive(
    hub: Hub,
    driver: LockDriver,
    *,
    scheduler: ManualScheduler | None = None,
    camera: EntryCamera | None = None,
) -> None:
    """Boot the hub again on the same journal and lock, driving the lock through
    `driver` (and recording through `camera`)."""
    hub.boot_after_crash(
        scheduler or ManualScheduler(), driver=driver, camera=camera, reopen_journal=False
    )


def _assert_refused(hub: Hub, reply: Reply | None, reason: Reason) -> None:
    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", reason)
    [refusal] = [
        event
        for event in hub.events(EventKind.COMMAND_REFUSED)
        if event.data.get("command_id") == reply.command_id
    ]
    assert refusal.data["reason"] == reason
    assert reply.seqs == [refusal.seq]
    assert hub.stored_reply(reply.command_id) == reply  # a redelivery gets the same answer


def _open_entries(hub: Hub) -> list[str]:
    return [visit[1] for visit in hub.journal.visits()]


def _secured(hub: Hub) -> list[str]:
    return [event.data["entry_id"] for event in hub.events(EventKind.ENTRY_SECURED)]


# --- the request never reached the lock ------------------------------------------------


def test_an_unlock_the_radio_cannot_send_is_refused_not_ready(hub: Hub) -> None:
    # The motor was never reached: the courier is told the lock is not ready (and what to
    # do instead), as for a lock known to be offline, not that its motor failed.
    _drive(hub, RadioJustFailed(hub.lock))

    reply = hub.send(hub.command(hub.grant()))

    _assert_refused(hub, reply, Reason.LOCK_NOT_READY)
    assert reply is not None and reply.reason in COURIER_ADVICE
    assert hub.lock.actuations == 0
    assert hub.lock.status().secure
    assert _open_entries(hub) == []  # the door is free for the next entry


# --- camera first -----------------------------------------------------------------------


def test_a_camera_that_cannot_record_refuses_the_unlock_and_frees_the_door(hub: Hub) -> None:
    camera = _CameraThatCannotRecord()
    _drive(hub, hub.lock, camera=camera)

    reply = hub.send(hub.command(hub.grant()))

    _assert_refused(hub, reply, Reason.CAMERA_NOT_LIVE)  # answered: the service ends it
    assert reply is not None and reply.reason in COURIER_ADVICE
    assert (hub.lock.unlock_calls, hub.lock.actuations) == (0, 0)  # no camera, no entry
    assert hub.lock.status().secure
    assert _open_entries(hub) == []

    camera.fixed = True  # the recorder is back: the next entry goes ahead at once
    command = hub.command(hub.grant())
    hub.send(command)
    answer = hub.stored_reply(command.command_id)
    assert answer is not None and answer.result == "ok"
    assert camera.armed == [hub.entry_id]


# --- an unlock whose outcome is unknown -------------------------------------------------


def test_an_unlock_cut_off_on_the_way_back_is_relocked_when_it_lands(
    make_hub: Callable[..., Hub],
) -> None:
    clock = ManualScheduler()
    hub = make_hub(scheduler=clock, motor_seconds=MOTOR_SECONDS, auto_relock_seconds=None)
    _drive(hub, _AnswerLost(hub.lock, reached=True), scheduler=clock)
    command = hub.command(hub.grant())

    hub.send(command)

    reply = hub.stored_reply(command.command_id)
    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", Reason.ACTUATOR_FAILED)
    assert hub.lock.status().secure  # the lock's word from before its motor moved
    assert _open_entries(hub) == [hub.entry_id]  # so the entry stays, watching the door

    clock.advance(MOTOR_SECONDS)  # the unlock lands after all
    [late] = hub.events(EventKind.LOCK_UNLOCKED)
    assert late.data["entry_id"] == hub.entry_id
    assert hub.lock.lock_calls == 1  # thrown again at once

    clock.advance(MOTOR_SECONDS)
    assert hub.lock.status().secure
    assert _secured(hub) == [hub.entry_id]
    assert _open_entries(hub) == []
    assert hub.events(EventKind.ENTRY_ALERT) == []


def test_an_unlock_cut_off_before_it_reached_the_lock_frees_the_door_at_the_deadline(
    make_hub: Callable[..., Hub],
) -> None:
    clock = ManualScheduler()
    hub = make_hub(scheduler=clock, motor_seconds=MOTOR_SECONDS, auto_relock_seconds=None)
    _drive(hub, _AnswerLost(hub.lock, reached=False), scheduler=clock)

    hub.send(hub.command(hub.grant()))
    clock.advance(POLICY.deadline_seconds - 0.1)
    assert _open_entries(hub) == [hub.entry_id]  # it might still land

    clock.advance(0.2)  # by now no motor can still be moving: the lock's word stands
    assert _secured(hub) == [hub.entry_id]
    assert _open_entries(hub) == []
    assert hub.events(EventKind.ENTRY_ALERT) == []
    assert (hub.lock.actuations, hub.lock.lock_calls) == (0, 0)
