"""The hub agent: verifies every command offline, drives the locks, journals every event.

Order of an unlock (DESIGN principles 1, 2, 4, 5):
  1. the command parses, speaks our protocol version and is not past its `not_after`;
  2. the grant verifies against the issuer keys the hub trusts (EdDSA only, audience =
     this hub and a known access point, inside nbf/exp, scope "unlock", bound to the
     command's entry);
  3. the lock is online, not jammed, locked, and the door is closed;
  4. the token id is recorded as used, durably: a grant opens a door once, ever;
  5. the camera opens the entry's recording (camera first: one that cannot is a refusal,
     `camera_not_live`, and the door is free again);
  6. only then is the actuator called. Any failure before 6 is a refusal, journalled,
     and the lock is never touched; so is a request the driver cannot send (LockError:
     the lock out of reach, `lock_not_ready`).
The unlock is answered by the lock's report of a remote unlock (or of its failure),
never by the button or thumb-turn meanwhile. A failed unlock that left the bolt off
locked (a jam half-way) is refused all the same, and the bolt relocked and watched. One
failed for no stated reason (OperationError UNSPECIFIED: the drivers' word for an unlock
whose answer was lost) keeps its entry open until it lands (relocked at once) or the
relock deadline passes (`_after_failed_unlock`).
When the door closes during an entry, the hub relocks; the entry is secured only when
the lock is online and the bolt reports locked AND the door sensor reports closed (an
offline lock's last word is no verification: the relock deadline alarms as for a relock
that failed, and the hub looks again every `RelockPolicy.recheck_seconds`, since a lock
back online with its bolt thrown may report no change; one back with its bolt drawn,
whose relock could not be sent, is relocked at that look). An unlocked door that nobody
opens is relocked (and the relock watched) after `RelockPolicy.unopened_seconds`, for
locks that do not relock themselves. After a restart, an entry whose unlock never
reported is not ended on the lock's word (its motor may still be moving) until that
unlock reports or the relock deadline passes (`resume`).

A remote lock (`lock` command, the resident's "Lock now") is checked the same way
(a grant with scope "lock", single use), refused while another entry is in progress at
the door or while the door is open, and answered only once the lock and the sensor agree
(`_lock`); its outcome is journalled as `lock.command`.

Keypad codes (`hub.credentials`): the signed desired document on `desired` says which
codes each lock holds; a code that opens the lock starts an entry like a grant does (a
fresh entry id, the camera armed at once, the relock watched, `entry.secured` at the
verified relock), and its `lock.unlocked` names the credential as `grant_id`.

A journal that cannot write (a full or failing disk, `JournalError`) never opens a door:
a command whose own write fails (the token spent, the entry ended, the challenge's
reply) is refused `hub_storage_failed`, and the bolt does not move. What the locks and
cameras report meanwhile is not dropped: each event waits in memory, in order, with an
error in the log, and the resend loop journals and publishes it once the journal writes
again (`record`); so does the event of a reply that could not be journalled, while the
reply itself goes out at once and is kept in memory for a redelivered command
(`_record_and_reply`). The entries go on meanwhile: relocks, verification, alarms. Held
events die with the process: a restart before the disk has room loses them (each was
logged).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import paho.mqtt.client as paho
from pydantic import ValidationError

from doorstep.hub.camera import EntryCamera
from doorstep.hub.credentials import CredentialManager
from doorstep.hub.journal import Journal, JournalError
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    DoorState,
    DoorStateChange,
    LockDriver,
    LockError,
    LockEvent,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)
from doorstep.hub.scheduling import Cancellable, Scheduler, ThreadScheduler
from doorstep.protocol import PROTOCOL_VERSION, Reason, Topics, pop
from doorstep.protocol.grants import GrantClaims, GrantRefused, GrantVerifier
from doorstep.protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    Alert,
    CameraBeat,
    Command,
    CommandKind,
    Event,
    EventKind,
    Reply,
    Status,
    b64decode,
    b64encode,
)
from doorstep.protocol.mqtt import BrokerAddress, close, connect, make_client
from doorstep.video.clips import Clip
from doorstep.video.errors import VideoError
from doorstep.video.liveness import Liveness

log = logging.getLogger(__name__)

_ALARM_KINDS = {
    AlarmCode.LOCK_JAMMED: EventKind.LOCK_JAMMED,
    AlarmCode.DOOR_FORCED_OPEN: EventKind.DOOR_FORCED,
}

# Bolt states an unlock ends in: a restored entry whose lock reads one of these has seen
# its unlock land, reported or not.
_DRAWN = frozenset({LockState.UNLOCKED, LockState.UNLATCHED})
# Door states in which a bolt thrown is not known to stand in an open door frame.
_NOT_SEEN_OPEN = frozenset({DoorState.CLOSED, DoorState.UNSPECIFIED_ERROR})
# The sources a lock names for a command a controller sent (drivers that cannot tell say
# UNSPECIFIED): only these can report the outcome of the hub's unlock.
_REQUEST_SOURCES = frozenset(
    {OperationSource.REMOTE, OperationSource.PROPRIETARY_REMOTE, OperationSource.UNSPECIFIED}
)

RESEND_SECONDS = 3.0
TOKEN_RETENTION_SECONDS = 3600
# How long an entry a lock command ended is remembered (`Journal.end_entry`): longer than
# any grant for it can live (the service's `grant_ttl_seconds` is at most an hour).
ENDED_ENTRY_SECONDS = 2 * TOKEN_RETENTION_SECONDS
# How long a phone has to sign the hub's challenge (`protocol.pop`).
CHALLENGE_SECONDS = 60.0


@dataclass
class _Visit:
    """An entry in progress at one access point."""

    entry_id: str
    command_id: str
    replied: bool = False
    opened: bool = False  # whether the door opened during the entry
    # When the door last opened (the hub's clock; journalled, so a restart counts the
    # `door_held_open` limit from it); None once shut, or if it opened unseen.
    opened_at: float | None = None
    # Restored with its unlock never reported and the bolt not reading drawn back, or its
    # unlock reported failed for no stated reason (its answer may have been lost): the
    # motor may still be drawing it, so the lock's word ends nothing yet (`resume`,
    # `_after_failed_unlock`).
    unlock_in_doubt: bool = False
    # Watching the relock (in memory; a restart starts watching again from `resume`):
    relock_attempts: int = 0
    relock_unsent: bool = False  # the last relock could not even be sent (LockError)
    unopened_timer: Cancellable | None = None
    door_timer: Cancellable | None = None
    deadline_timer: Cancellable | None = None
    alerts: set[str] = field(default_factory=set)

    def cancel_timers(self) -> None:
        for timer in (self.unopened_timer, self.door_timer, self.deadline_timer):
            if timer is not None:
                timer.cancel()
        self.unopened_timer = self.door_timer = self.deadline_timer = None


@dataclass
class _PendingLock:
    """A remote lock command whose bolt is moving; settled by the lock's report or the
    confirmation deadline, whichever comes first."""

    command_id: str
    access_point: str
    entry_id: str | None  # the entry this lock ends, if any (the service names it)
    timer: Cancellable | None = None
    reply: Reply | None = None
    # Waiting for that entry's unlock to report: the bolt moves once it has.
    after_unlock: bool = False


@dataclass(frozen=True)
class RelockPolicy:
    """How hard the hub tries to get the door locked, and when it raises the alarm."""

    retries: int = 3  # relock attempts after a jam or failed movement
    retry_seconds: float = 2.0
    deadline_seconds: float = 30.0  # door closed -> verified locked, or `relock_failed`
    # Unlocked with the door shut and not opened within this -> the hub relocks, for locks
    # without their own auto-relock (longer than the usual AutoRelockTime: theirs goes first).
    unopened_seconds: float = 60.0
    door_open_seconds: float = 120.0  # door open longer -> `door_held_open`
    # A remote lock must report locked (and the door closed) within this, or it failed.
    # Shorter than the service's wait for the reply, so the resident hears the failure.
    lock_confirm_seconds: float = 8.0
    # After `relock_failed`, how often the hub looks at the lock again: one back online
    # with its bolt thrown reports nothing new, yet now secures the entry.
    recheck_seconds: float = 10.0


class Refusal(Exception):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class HubAgent:
    def __init__(
        self,
        *,
        hub_id: str,
        journal: Journal,
        locks: dict[str, LockDriver],
        verifier: GrantVerifier,
        clock: Callable[[], float],
        scheduler: Scheduler | None = None,
        relock: RelockPolicy | None = None,
        cameras: dict[str, EntryCamera] | None = None,
        credentials: CredentialManager | None = None,
    ) -> None:
        self.hub_id = hub_id
        self.credentials = credentials
        self._scheduler = scheduler or ThreadScheduler()
        self.cameras = dict(cameras or {})
        self._policy = relock or RelockPolicy()
        self.topics = Topics(hub_id)
        self.journal = journal
        self.locks = locks
        self._verifier = verifier
        self._clock = clock
        self._mutex = threading.RLock()
        self._visits: dict[str, _Visit] = {}
        self._locking: dict[str, _PendingLock] = {}  # access point -> remote lock in motion
        # entry id -> (challenge, expires at, token id); in memory: a restart spends them.
        self._challenges: dict[str, tuple[bytes, float, bytes]] = {}
        # Written while the journal could not write: events (kind, data, at) to journal
        # and publish, in order, and replies already sent (command id -> bytes).
        self._held: deque[tuple[EventKind, dict[str, Any], float]] = deque()
        self._held_replies: dict[str, bytes] = {}
        self._held_lock = threading.Lock()
        self._client: paho.Client | None = None
        self._stop = threading.Event()
        self._resender: threading.Thread | None = None
        for access_point, entry_id, command_id, replied, opened, opened_at in journal.visits():
            if access_point in locks:
                # The unlock's reply is journalled with its event; the visit's own row
                # catches up only when the door opens. A command with a reply on record
                # was answered: another unlock during this visit is no answer to it.
                if not replied and command_id:
                    replied = journal.command_reply(command_id) is not None
                self._visits[access_point] = _Visit(
                    entry_id, command_id, replied, opened, opened_at=opened_at
                )
        for access_point, driver in locks.items():
            driver.subscribe(self._listener(access_point))
        for access_point, camera in self.cameras.items():
            camera.watch(self._camera_listener(access_point))
            camera.watch_clips(self._clip_listener(access_point))
        if credentials is not None:
            credentials.attach(record=self.record, publish=self._publish_reported)

    def _listener(self, access_point: str) -> Callable[[LockEvent], None]:
        return lambda event: self._on_lock_event(access_point, event)

    def _camera_listener(self, access_point: str) -> Callable[[Liveness], None]:
        return lambda liveness: self._on_camera(access_point, liveness)

    def _clip_listener(self, access_point: str) -> Callable[[Clip], None]:
        return lambda clip: self._clip_recorded(access_point, clip)

    # --- lifecycle -------------------------------------------------------------------

    def start(self, broker: BrokerAddress) -> None:
        offline = Status(state="offline", epoch=self.journal.epoch).model_dump_json().encode()
        client = make_client(self.hub_id, broker, will=(self.topics.status, offline))
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        self._client = client
        self.record(EventKind.HUB_STARTED, {"epoch": self.journal.epoch})
        for camera in self.cameras.values():
            camera.start()
        self.resume()
        if self.credentials is not None:
            self.credentials.start()
        # A broker out of reach (the home's internet down at power-up, the service away) is
        # no reason to stop: the hub journals what its locks report meanwhile and sends it
        # all once connected (the resend loop, `_on_connect`).
        connect(client, broker, keep_trying=True)
        self._resender = threading.Thread(target=self._resend_loop, name="resend", daemon=True)
        self._resender.start()

    def resume(self) -> None:
        """Finish entries a previous run left open: the door may have closed meanwhile.
        Each goes on recording in the window the previous run opened (the camera kept
        it), or from now if the camera lost it. A recording the previous run left open
        for an entry that is no longer open here (it ended just before the restart) is
        closed. An unlock the previous run left unanswered is owed no answer by this one
        (the service has given up waiting): the door is watched as for any answered
        unlock. Its bolt may still be moving (a hub restarts faster than a motor turns),
        so a lock that reads locked is no proof: the entry stays open until that unlock
        reports (and the bolt is thrown again at once, `_settle_doubt`) or until the
        relock deadline, by which any motor has stopped.

        A shut door is relocked at once; an open one when it closes. So is a door whose
        sensor does not know where it is (DoorUnspecifiedError: a sleepy contact sensor
        that has not reported since the hub restarted) when the entry never opened it:
        it was shut when the bolt was drawn and never seen open since, and the relock is
        watched (`relock_failed` at the deadline until the sensor confirms it shut). A
        deadbolt is thrown only into a shut door, so an unknown door the entry did open
        is treated as open: watched, and relocked when the sensor reports it closed. A
        door watched while open raises `door_held_open` `door_open_seconds` after it
        opened as the previous run saw it (at once if that is past), not after the
        restart."""
        with self._mutex:
            for access_point, camera in self.cameras.items():
                visit = self._visits.get(access_point)
                for entry_id in camera.restored():
                    if visit is None or visit.entry_id != entry_id:
                        self._end_recording(access_point, entry_id)
            for access_point, visit in list(self._visits.items()):
                status = self.locks[access_point].status()
                visit.unlock_in_doubt = not visit.replied and status.lock_state not in _DRAWN
                visit.replied = True
                self._rearm(access_point, visit)
                data = {"access_point": access_point, "entry_id": visit.entry_id}
                if status.secure:
                    self._maybe_secured(access_point, visit, data)  # in doubt: watched
                elif status.door_state == DoorState.CLOSED or (
                    status.door_state == DoorState.UNSPECIFIED_ERROR and not visit.opened
                ):
                    self._relock(access_point)
                    self._watch_relock(access_point, visit)
                else:
                    self._watch_door(access_point, visit)

    def stop(self) -> None:
        self._stop.set()
        if self.credentials is not None:
            self.credentials.stop()
        with self._mutex:
            for visit in self._visits.values():
                visit.cancel_timers()
            for pending in list(self._locking.values()):
                self._drop_lock(pending)  # unanswered: the service reports a timeout
        if self._client is not None:
            offline = Status(state="offline", epoch=self.journal.epoch)
            info = self._client.publish(
                self.topics.status, offline.model_dump_json().encode(), qos=1, retain=True
            )
            if info.rc == paho.MQTT_ERR_SUCCESS:  # else not connected: the will says it
                info.wait_for_publish(timeout=2)
            close(self._client)
        for camera in self.cameras.values():
            camera.stop()
        for driver in self.locks.values():
            driver.close()
        self.journal.close()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        topics = [(self.topics.cmd, 1), (self.topics.ack, 1)]
        if self.credentials is not None:
            topics.append((self.topics.desired, 1))
        client.subscribe(topics)
        online = Status(state="online", epoch=self.journal.epoch).model_dump_json().encode()
        client.publish(self.topics.status, online, qos=1, retain=True)
        if self.credentials is not None:
            self.credentials.publish_report()
        self._resend()

    # --- events out --------------------------------------------------------------------

    def record(self, kind: EventKind, data: dict[str, Any]) -> Event | None:
        """Journal first, then publish: an event that was not written was not sent.
        While the journal cannot write, and while earlier events still wait for it, the
        event waits in memory (None is returned) for `_journal_held`."""
        if not self._held:
            try:
                event = self.journal.append(kind, data, self._clock())
            except JournalError:
                pass  # held, below, with an error in the log
            else:
                self._publish_event(event)
                return event
        self._hold(kind, data)
        return None

    def _hold(self, kind: EventKind, data: dict[str, Any]) -> None:
        with self._held_lock:
            self._held.append((kind, data, self._clock()))
            waiting = len(self._held)
        log.error(
            "the journal cannot write: event %s held in memory until it can (%d waiting)",
            kind,
            waiting,
        )

    def _journal_held(self) -> None:
        """Journal and publish the events held while the journal could not write, in the
        order they happened (each with its own time), and journal the replies sent
        meanwhile; stop at the first write that still fails, to try again next round."""
        with self._held_lock:
            if not self._held and not self._held_replies:
                return
            count = len(self._held)
            try:
                while self._held:
                    kind, data, at = self._held[0]
                    event = self.journal.append(kind, data, at)
                    self._held.popleft()
                    self._publish_event(event)
                for command_id, body in list(self._held_replies.items()):
                    self.journal.record_command(command_id, body, self._clock())
                    del self._held_replies[command_id]
            except JournalError:
                return  # still full: logged when each was held
        log.warning("the journal writes again: %d held events journalled", count)

    def _publish_event(self, event: Event) -> None:
        if self._client is not None:
            self._client.publish(self.topics.events, event.model_dump_json().encode(), qos=1)

    def _publish_reported(self, body: bytes) -> None:
        if self._client is not None:
            self._client.publish(self.topics.reported, body, qos=1, retain=True)

    def _resend(self, after: tuple[int, int] = (0, 0)) -> None:
        # Not while disconnected: the client would queue every round's copies until it
        # connects, then send them all (`_on_connect` resends once connected).
        if self._client is None or not self._client.is_connected():
            return
        for event in self.journal.unacknowledged(after=after):
            self._publish_event(event)

    def _resend_loop(self) -> None:
        while not self._stop.wait(RESEND_SECONDS):
            try:
                self._journal_held()
                self._resend()
                self.forget_expired()
            except Exception:  # the process edge: keep resending
                log.exception("resend failed")

    def forget_expired(self) -> None:
        """Let the journal forget the used token ids and ended entries of grants expired
        an hour ago. Those grants stay refused even if the clock was ahead when they were
        forgotten (`Journal.forgotten_through`); the hour keeps that from ever refusing a
        grant the verifier's leeway still admits."""
        cutoff = int(self._clock()) - TOKEN_RETENTION_SECONDS
        self.journal.forget_tokens_expired_before(cutoff)
        self.journal.forget_ended_entries_before(cutoff)

    # --- messages in -------------------------------------------------------------------

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        try:
            if message.topic == self.topics.ack:
                ack = Ack.model_validate_json(message.payload)
                self.journal.acknowledge(ack.epoch, ack.through_seq)
            elif message.topic == self.topics.cmd:
                self.handle_command(bytes(message.payload))
            elif message.topic == self.topics.desired and self.credentials is not None:
                self.credentials.submit(bytes(message.payload))
        except ValidationError as exc:
            log.warning("ignored a malformed message on %s: %s", message.topic, exc)
        except Exception:  # the process edge: log, stay up, the lock stays as it is
            log.exception("message handling failed")

    def handle_command(self, payload: bytes) -> Reply | None:
        """Handle one command; the reply is published (and returned, for tests)."""
        with self._mutex:
            command = self._parse(payload)
            if command is None:
                return None
            previous = self.journal.command_reply(command.command_id)
            if previous is None and self._held_replies:
                with self._held_lock:
                    previous = self._held_replies.get(command.command_id)
            if previous is not None:  # redelivered: answer again, do nothing again
                self._send_reply_bytes(previous)
                return Reply.model_validate_json(previous)
            if self._in_flight(command.command_id):  # redelivered while the bolt moves
                return None  # the reply follows the lock's report, as for the first copy
            if command.kind == CommandKind.REPLAY:
                self._resend(after=(command.from_epoch or 0, (command.from_seq or 1) - 1))
                return None
            try:
                return self._execute(command)
            except Refusal as refusal:
                return self._refuse(command, refusal.reason, str(refusal))
            except JournalError as exc:  # nothing spent, nothing moved: refused
                log.error("command %s refused: %s", command.command_id, exc)
                return self._refuse(command, Reason.HUB_STORAGE_FAILED, str(exc))

    def _in_flight(self, command_id: str) -> bool:
        return any(visit.command_id == command_id for visit in self._visits.values()) or any(
            pending.command_id == command_id for pending in self._locking.values()
        )

    def _parse(self, payload: bytes) -> Command | None:
        if len(payload) > MAX_MESSAGE_BYTES:
            self.record(EventKind.COMMAND_REFUSED, {"reason": Reason.BAD_MESSAGE})
            return None
        try:
            return Command.model_validate_json(payload)
        except ValidationError:
            self.record(EventKind.COMMAND_REFUSED, {"reason": Reason.BAD_MESSAGE})
            return None

    def _execute(self, command: Command) -> Reply | None:
        if command.v != PROTOCOL_VERSION:
            raise Refusal(Reason.UNSUPPORTED_VERSION)
        if self._clock() > command.not_after:
            raise Refusal(Reason.COMMAND_EXPIRED)
        if command.kind == CommandKind.CHALLENGE:
            return self._challenge(command)
        if command.kind == CommandKind.UNLOCK:
            return self._unlock(command)
        if command.kind == CommandKind.LOCK:
            return self._lock(command)
        raise Refusal(Reason.BAD_MESSAGE, f"unsupported command {command.kind}")

    def _admissible(self, command: Command) -> tuple[GrantClaims, LockDriver]:
        """The checks an unlock and its challenge share: the grant, its door, the entry,
        no other entry in progress, a ready lock."""
        claims, driver = self._granted(command, scope="unlock")
        if self.journal.entry_ended(claims.entry_id, now=self._clock()):
            raise Refusal(Reason.ENTRY_ENDED, "a lock command has ended this entry")
        access_point = claims.access_point
        if access_point in self._visits:
            raise Refusal(Reason.ENTRY_IN_PROGRESS, "another entry is open at this door")
        self._check_ready(driver)
        self._check_camera(access_point)
        return claims, driver

    def _challenge(self, command: Command) -> Reply:
        """A grant bound to a phone key: check everything an unlock would, then give the
        phone something fresh to sign. Nothing moves; the token is not used yet."""
        claims, _driver = self._admissible(command)
        if claims.pop_key is None:
            raise Refusal(Reason.BAD_MESSAGE, "the grant names no key to challenge")
        if self.journal.token_used(claims.token_id):
            raise Refusal(Reason.TOKEN_REPLAYED)
        nonce = secrets.token_bytes(pop.CHALLENGE_BYTES)
        now = self._clock()
        self._challenges = {
            entry: pending for entry, pending in self._challenges.items() if pending[1] > now
        }
        self._challenges[claims.entry_id] = (nonce, now + CHALLENGE_SECONDS, claims.token_id)
        return self._reply(
            Reply(command_id=command.command_id, result="ok", challenge=b64encode(nonce))
        )

    def _check_proof(self, command: Command, claims: GrantClaims) -> None:
        """The grant's key must have signed this entry's live challenge. The challenge is
        spent by any attempt, right or wrong, so a proof cannot be guessed at."""
        if claims.pop_key is None:
            return
        if not command.proof:
            raise Refusal(Reason.PROOF_REQUIRED)
        pending = self._challenges.pop(claims.entry_id, None)
        if pending is None or pending[1] < self._clock() or pending[2] != claims.token_id:
            raise Refusal(Reason.PROOF_STALE)
        try:
            signature = b64decode(command.proof)
        except ValueError as exc:
            raise Refusal(Reason.PROOF_INVALID, "proof is not base64url") from exc
        signed = pop.message(claims.entry_id, claims.audience, pending[0])
        if not pop.verify(claims.pop_key, signed, signature):
            raise Refusal(Reason.PROOF_INVALID)

    def _unlock(self, command: Command) -> Reply | None:
        claims, driver = self._admissible(command)
        access_point = claims.access_point
        self._check_proof(command, claims)
        visit = _Visit(claims.entry_id, command.command_id)
        # The token is spent and the visit journalled in one write, before the bolt moves:
        # a restart mid-entry still relocks.
        spent = self.journal.use_token(
            claims.token_id,
            expires=claims.expires,
            now=self._clock(),
            visit=(access_point, visit.entry_id, visit.command_id),
        )
        if not spent:
            raise Refusal(Reason.TOKEN_REPLAYED)
        self._visits[access_point] = visit
        camera = self.cameras.get(access_point)
        if camera is not None:
            try:
                camera.arm(claims.entry_id)  # before the bolt moves: the clip shows the unlock
            except VideoError as exc:  # camera first: no recording, no entry
                self._visits.pop(access_point)
                self._drop_visit(access_point)  # nothing armed, nothing moved
                raise Refusal(Reason.CAMERA_NOT_LIVE, f"the camera cannot record: {exc}") from exc
            # The first heartbeat goes out before the unlock's reply, on the same
            # connection: a service that sees the unlock watches the camera from then on,
            # even if the hub dies before its next report.
            self._send_beat(access_point, visit, camera.liveness())
        try:
            driver.unlock(OperationSource.REMOTE)
        except LockError as exc:  # not sent: the lock is out of reach, its motor untried
            self._close_visit(access_point)
            raise Refusal(Reason.LOCK_NOT_READY, str(exc)) from exc
        return None  # the reply follows the lock's own report (see _on_lock_event)

    def _lock(self, command: Command) -> Reply | None:
        """Throw the bolt from afar: the resident's "Lock now".

        Locking is the safe direction, yet the hub still takes it only on a signed,
        bounded, single-use grant with scope "lock" (never an unlock grant), so a broker
        or a replayed message cannot move the bolt. The camera is not required: nobody
        is let in.

        The door must be closed (a bolt cannot be thrown into an open door; nothing
        moves). While another entry is in progress at the door (a courier or a guest
        inside, or on the way in) the command is refused with `entry_in_progress`: that
        entry has its own verified relock the moment the door closes, and throwing the
        bolt mid-delivery would lock the visitor in or make them force their way out,
        and leave the entry's record saying locked while someone is inside. The entry
        a lock may end is the one the service names in the grant (`entry_id`): the
        resident's own remote unlock, or an entry its courier called off before the door
        opened; the entry then ends as secured without anyone going in. When that
        entry's unlock is still moving the bolt (the lock came right behind it), the
        lock waits for the unlock's report and then goes ahead: thrown at once, the bolt
        would be drawn back by the unlock still under way. When the lock comes before
        that entry's unlock, the entry is remembered as ended (`Journal.end_entry`), and
        the unlock, when it comes, is refused `entry_ended`.

        The reply follows the lock's own report, verified as the relock watch does
        (bolt locked AND door closed), or a failure: a jam, a refusal, or no report by
        `lock_confirm_seconds`. A lock out of reach (offline, or the request not sent)
        is `lock_not_ready`: nothing says its motor was even tried. A jammed lock is
        still asked: a new movement may free it, and a failure is reported either way.
        """
        claims, driver = self._granted(command, scope="lock")
        # Whatever this lock does at the door, the service has ended its entry: an unlock
        # for it that comes after (the two travel apart, and with several service
        # processes may arrive in either order) is refused, not carried out.
        self.journal.end_entry(claims.entry_id, until=int(self._clock()) + ENDED_ENTRY_SECONDS)
        access_point = claims.access_point
        visit = self._visits.get(access_point)
        if visit is not None and visit.entry_id != claims.entry_id:
            raise Refusal(Reason.ENTRY_IN_PROGRESS, "an entry is in progress at this door")
        if access_point in self._locking:
            raise Refusal(Reason.LOCK_NOT_READY, "another lock command is moving this bolt")
        waits = visit is not None and not visit.replied  # for the unlock under way
        status = driver.status()
        if not status.online:
            raise Refusal(Reason.LOCK_NOT_READY, "lock offline")
        if status.door_state != DoorState.CLOSED:
            raise Refusal(Reason.DOOR_OPEN, "a bolt cannot be thrown into an open door")
        if not self.journal.use_token(claims.token_id, expires=claims.expires, now=self._clock()):
            raise Refusal(Reason.TOKEN_REPLAYED)
        pending = _PendingLock(
            command.command_id,
            access_point,
            visit.entry_id if visit is not None else None,
            after_unlock=waits,
        )
        self._locking[access_point] = pending
        if status.secure and not waits:  # already locked and shut: nothing to move, say so
            self._settle_lock(pending)
            return pending.reply
        # The deadline counts from now, the unlock's report included when it waits.
        pending.timer = self._scheduler.call_later(
            self._policy.lock_confirm_seconds, lambda: self._lock_deadline(pending)
        )
        if waits:
            return None  # `_lock_after_unlock` moves the bolt once the unlock reports
        try:
            driver.lock(OperationSource.REMOTE)
        except LockError as exc:  # not sent: the lock is out of reach, its motor untried
            self._drop_lock(pending)
            raise Refusal(Reason.LOCK_NOT_READY, str(exc)) from exc
        return pending.reply  # set when the lock reported at once; else it follows

    def _lock_after_unlock(self, access_point: str) -> None:
        """A lock that waited for its entry's unlock goes ahead once that unlock has
        reported (succeeded or failed): settled at once when the door is already secure
        or open, else the bolt is thrown and the lock's report settles it."""
        pending = self._locking.get(access_point)
        if pending is None or not pending.after_unlock or self._unlock_moving(pending):
            return
        pending.after_unlock = False
        status = self.locks[access_point].status()
        if status.secure or status.door_state != DoorState.CLOSED:
            self._settle_lock(pending)
            return
        try:
            self.locks[access_point].lock(OperationSource.REMOTE)
        except LockError as exc:  # the lock out of reach: expected, and answered as such
            log.warning("lock after the unlock at %s not sent: %s", access_point, exc)
            self._settle_lock(pending, Reason.LOCK_NOT_READY)

    def _unlock_moving(self, pending: _PendingLock) -> bool:
        """Whether the unlock of the entry `pending` ends has yet to report."""
        visit = self._visits.get(pending.access_point)
        return visit is not None and visit.entry_id == pending.entry_id and not visit.replied

    def _lock_report(self, access_point: str, event: LockEvent) -> None:
        """The lock said something about a remote lock in motion: settle it if that was
        the outcome (moved, failed to move, jammed)."""
        pending = self._locking.get(access_point)
        if pending is None:
            return
        if _is_lock_operation(event):
            self._settle_lock(pending)
        elif isinstance(event, DoorLockAlarm) and event.alarm == AlarmCode.LOCK_JAMMED:
            self._settle_lock(pending, Reason.LOCK_JAMMED)

    def _lock_deadline(self, pending: _PendingLock) -> None:
        with self._mutex:
            if self._locking.get(pending.access_point) is pending:
                self._settle_lock(pending, Reason.ACTUATOR_FAILED)

    def _settle_lock(self, pending: _PendingLock, failure: Reason | None = None) -> None:
        """Journal the outcome (`lock.command`), then reply: ok only when the lock and the
        sensor agree the door is shut and locked, whatever was reported before, and no
        unlock is still moving the bolt away (a lock still waiting for one has failed).
        A lock offline by then is `lock_not_ready`: its last word, whatever it says,
        verifies nothing, and its motor may never have been reached."""
        self._drop_lock(pending)
        status = self.locks[pending.access_point].status()
        if pending.after_unlock and self._unlock_moving(pending):
            reason = failure or Reason.ACTUATOR_FAILED
        elif status.secure:
            reason = None
        elif not status.online:
            reason = Reason.LOCK_NOT_READY
        elif status.door_state != DoorState.CLOSED:
            reason = Reason.DOOR_OPEN
        else:
            reason = Reason.LOCK_JAMMED if status.jammed else failure or Reason.ACTUATOR_FAILED
        data: dict[str, Any] = {
            "access_point": pending.access_point,
            "command_id": pending.command_id,
            "result": "locked" if reason is None else "failed",
            "lock_state": int(status.lock_state),
            "door_state": int(status.door_state),
        }
        if pending.entry_id is not None:
            data["entry_id"] = pending.entry_id
        if reason is not None:
            data["reason"] = reason
        pending.reply = self._record_and_reply(
            EventKind.LOCK_COMMAND,
            data,
            Reply(
                command_id=pending.command_id,
                result="ok" if reason is None else "refused",
                reason=reason,
            ),
        )

    def _drop_lock(self, pending: _PendingLock) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        if self._locking.get(pending.access_point) is pending:
            del self._locking[pending.access_point]

    def _granted(self, command: Command, *, scope: str) -> tuple[GrantClaims, LockDriver]:
        """The grant verifies for `scope`, expires after every grant whose token id or
        entry the journal has forgotten, is not revoked, names a door of this hub, and
        the command is for the grant's entry and door."""
        claims = self._verify_grant(command, scope)
        if claims.expires <= self.journal.forgotten_through():
            # Its token id or entry may be forgotten (the clock ran ahead, then came back).
            raise Refusal(Reason.TOKEN_EXPIRED, "the hub's clock has been past this grant")
        if self.credentials is not None and self.credentials.is_revoked(claims.token_id):
            raise Refusal(Reason.TOKEN_REVOKED)
        driver = self.locks.get(claims.access_point)
        if driver is None:
            raise Refusal(Reason.TOKEN_AUDIENCE, "no such access point on this hub")
        if command.entry_id != claims.entry_id or command.access_point != claims.access_point:
            raise Refusal(Reason.TOKEN_ENTRY_MISMATCH)
        return claims, driver

    def _verify_grant(self, command: Command, scope: str) -> GrantClaims:
        if not command.grant:
            raise Refusal(Reason.TOKEN_MALFORMED, "no grant")
        try:
            token = b64decode(command.grant)
        except ValueError as exc:
            raise Refusal(Reason.TOKEN_MALFORMED, "grant is not base64url") from exc
        try:
            return self._verifier.verify(token, required_scope=scope)
        except GrantRefused as refused:
            raise Refusal(refused.reason, str(refused)) from refused

    @staticmethod
    def _check_ready(driver: LockDriver) -> None:
        status = driver.status()
        if not status.online:
            raise Refusal(Reason.LOCK_NOT_READY, "lock offline")
        if status.jammed:
            raise Refusal(Reason.LOCK_JAMMED)
        if status.door_state != DoorState.CLOSED or status.lock_state != LockState.LOCKED:
            raise Refusal(Reason.DOOR_OPEN, "door must be closed and locked before an entry")

    def _refuse(self, command: Command, reason: Reason, detail: str) -> Reply:
        log.info("refused command %s: %s", command.command_id, detail)
        # The kind and the door let the service record a refused remote lock from this
        # journalled event alone, whether or not anyone still waits for the reply.
        data: dict[str, Any] = {
            "command_id": command.command_id,
            "kind": command.kind,
            "entry_id": command.entry_id,
            "reason": reason,
        }
        if command.access_point is not None:
            data["access_point"] = command.access_point
        return self._record_and_reply(
            EventKind.COMMAND_REFUSED,
            data,
            Reply(command_id=command.command_id, result="refused", reason=reason),
        )

    def _reply(self, reply: Reply) -> Reply:
        body = reply.model_dump_json().encode()
        self.journal.record_command(reply.command_id, body, self._clock())
        self._send_reply_bytes(body)
        return reply

    def _record_and_reply(self, kind: EventKind, data: dict[str, Any], reply: Reply) -> Reply:
        """Journal an event and `reply`, which names it, in one write; then publish the
        event and the reply, in that order. Returns the reply as sent.

        When the journal cannot write, the reply goes out all the same (naming no event:
        a command waits for no event) and is kept in memory, so a redelivered command is
        answered with it, not carried out; the event waits with the held ones (`record`)."""
        try:
            event, sent, body = self.journal.append_answering(kind, data, self._clock(), reply)
        except JournalError as exc:
            log.error("reply to %s sent, not journalled: %s", reply.command_id, exc)
            body = reply.model_dump_json().encode()
            with self._held_lock:
                self._held_replies[reply.command_id] = body
            self._hold(kind, data)
            self._send_reply_bytes(body)
            return reply
        self._publish_event(event)
        self._send_reply_bytes(body)
        return sent

    def _send_reply_bytes(self, body: bytes) -> None:
        if self._client is not None:
            self._client.publish(self.topics.reply, body, qos=1)

    # --- what the lock reports -------------------------------------------------------

    def _on_lock_event(self, access_point: str, event: LockEvent) -> None:
        with self._mutex:
            visit = self._visits.get(access_point)
            data: dict[str, Any] = {"access_point": access_point}
            if visit is not None:
                data["entry_id"] = visit.entry_id
            pending = self._locking.get(access_point)
            if pending is not None and _is_lock_operation(event):
                data["command_id"] = pending.command_id
            if isinstance(event, (LockOperation, LockOperationError)) and event.other_controller:
                data["other_controller"] = True  # on record: not the hub's command
            # The unlock a restart left in doubt reports: its entry is watched as usual now.
            doubt = visit if visit is not None and visit.unlock_in_doubt else None
            if doubt is not None and _ends_unlock(event):
                doubt.unlock_in_doubt = False
            else:
                doubt = None
            if isinstance(event, LockOperation):
                self._on_operation(access_point, visit, event, data)
            elif isinstance(event, LockOperationError):
                self._on_operation_error(access_point, visit, event, data)
            elif isinstance(event, DoorStateChange):
                self._on_door(access_point, visit, event, data)
            elif isinstance(event, DoorLockAlarm):
                self.record(_ALARM_KINDS.get(event.alarm, EventKind.LOCK_ALARM),
                            {**data, "alarm": int(event.alarm)})  # fmt: skip
            if doubt is not None:
                self._settle_doubt(access_point, doubt, data)
            self._lock_report(access_point, event)
            # Last: the bolt it throws reports through this method again.
            self._lock_after_unlock(access_point)

    def _on_operation(
        self, access_point: str, visit: _Visit | None, event: LockOperation, data: dict[str, Any]
    ) -> None:
        data["source"] = int(event.source)
        if event.operation == LockOperationType.UNLOCK:
            credential = self._keypad_credential(access_point, event)
            if credential is not None:
                data.update(grant_id=credential, method="keypad")
                if visit is None:
                    visit = self._open_keypad_visit(access_point)
                    data["entry_id"] = visit.entry_id
            if _answers(visit, event):
                visit.replied = True
                reply = Reply(command_id=visit.command_id, result="ok")
                self._record_and_reply(EventKind.LOCK_UNLOCKED, data, reply)
            else:
                self.record(EventKind.LOCK_UNLOCKED, data)
            if (
                visit is not None
                and self.locks[access_point].status().door_state == DoorState.CLOSED
            ):
                self._watch_unopened(access_point, visit)
            if credential is not None and self.credentials is not None:
                self.credentials.record_use(credential)
        elif event.operation == LockOperationType.LOCK:
            self.record(EventKind.LOCK_LOCKED, data)
            door = self.locks[access_point].status().door_state
            if visit is not None and door not in _NOT_SEEN_OPEN:
                # A bolt thrown into an open door frame is an alarm, never a success. (One
                # behind a door of unknown position is no success either: unverified.)
                self._alert(visit, Alert.LOCKED_WHILE_OPEN, data)
            self._maybe_secured(access_point, visit, data)

    def _keypad_credential(self, access_point: str, event: LockOperation) -> str | None:
        if event.source != OperationSource.KEYPAD or self.credentials is None:
            return None
        return self.credentials.credential_at(access_point, event.user_index)

    def _open_keypad_visit(self, access_point: str) -> _Visit:
        """A code opened the lock: an entry starts now, as a grant's would. No command
        is owed a reply. The camera is armed at once; its pre-roll holds the unlock. The
        bolt has already moved, so a recorder that cannot arm is logged, never fatal:
        the entry's record and relock matter more than its video (as in `_rearm`)."""
        entry_id = f"ent-{secrets.token_hex(8)}"  # the shape of the service's `db.new_id`
        visit = _Visit(entry_id, command_id="", replied=True)
        self._open_visit(access_point, visit)
        camera = self.cameras.get(access_point)
        if camera is not None:
            try:
                camera.arm(entry_id)
            except VideoError:
                log.exception("keypad entry %s at %s is not recorded", entry_id, access_point)
            self._send_beat(access_point, visit, camera.liveness())
        return visit

    def _on_operation_error(
        self,
        access_point: str,
        visit: _Visit | None,
        event: LockOperationError,
        data: dict[str, Any],
    ) -> None:
        if event.source == OperationSource.KEYPAD and event.operation == LockOperationType.UNLOCK:
            # A refused code: on record (never the code), and no concern of any entry.
            self._keypad_refused(access_point, event)
            return
        data = {**data, "operation": int(event.operation), "error": int(event.error)}
        if _answers(visit, event):
            visit.replied = True
            reply = Reply(
                command_id=visit.command_id, result="refused", reason=Reason.ACTUATOR_FAILED
            )
            self._record_and_reply(EventKind.LOCK_ERROR, data, reply)
            self._after_failed_unlock(access_point, visit, event.error)
        else:
            self.record(EventKind.LOCK_ERROR, data)
        if event.operation == LockOperationType.LOCK and visit is not None:
            self._retry_relock(access_point, visit)

    def _after_failed_unlock(self, access_point: str, visit: _Visit, error: OperationError) -> None:
        """A refused unlock ends the entry when the lock said why its motor did not run
        (a flat battery, say) and the bolt reads locked. One that left the bolt off
        locked (a jam half-way) is relocked and watched as for a closed door, the entry
        kept until the relock is verified. One failed for no stated reason may have been
        cut off on the way back (the Matter and Zigbee2MQTT drivers report an unlock they
        heard no outcome of in time as failed), and may still land: its bolt reading
        locked is no proof, so the entry stays open, its unlock in doubt, until that
        unlock reports (and a bolt it drew is thrown again at once, `_settle_doubt`) or
        until the relock deadline, as after a restart mid-motion."""
        if self.locks[access_point].status().lock_state != LockState.LOCKED:
            self._relock(access_point)
            self._watch_relock(access_point, visit)
        elif error == OperationError.UNSPECIFIED:
            visit.unlock_in_doubt = True
            self._watch_relock(access_point, visit)
        else:
            self._close_visit(access_point)  # nothing for a restart to resume

    def _keypad_refused(self, access_point: str, event: LockOperationError) -> None:
        data: dict[str, Any] = {
            "access_point": access_point,
            "source": int(event.source),
            "error": int(event.error),
        }
        if self.credentials is not None:
            credential = self.credentials.credential_at(access_point, event.user_index)
            if credential is not None:
                data["grant_id"] = credential
        self.record(EventKind.KEYPAD_REFUSED, data)

    def _on_door(
        self, access_point: str, visit: _Visit | None, event: DoorStateChange, data: dict[str, Any]
    ) -> None:
        if event.door_state == DoorState.CLOSED:
            self.record(EventKind.DOOR_CLOSED, data)
            if visit is not None:
                visit.opened_at = None  # journalled again at the next opening, not now
            if visit is not None and visit.door_timer is not None:
                visit.door_timer.cancel()
                visit.door_timer = None
            if visit is not None and not visit.replied:
                # Shut again before the unlock reported (the sensor flickered): the bolt
                # is still moving. The unlock's report starts the watch on the shut door.
                return
            if (
                visit is not None
                and self.locks[access_point].status().lock_state != LockState.LOCKED
            ):
                self._relock(access_point)
                self._watch_relock(access_point, visit)
            else:
                self._maybe_secured(access_point, visit, data)
        else:
            if visit is not None and visit.unopened_timer is not None:
                visit.unopened_timer.cancel()
                visit.unopened_timer = None
            if visit is not None and visit.opened_at is None:
                visit.opened, visit.opened_at = True, self._clock()
                self._open_visit(access_point, visit)
            self.record(EventKind.DOOR_OPENED, {**data, "door_state": int(event.door_state)})
            if visit is not None:
                self._watch_door(access_point, visit)

    def _maybe_secured(self, access_point: str, visit: _Visit | None, data: dict[str, Any]) -> None:
        # The entry ends only on the lock's and the sensor's word, not on anyone's tap.
        if visit is None:
            return
        status = self.locks[access_point].status()
        if not status.secure or visit.unlock_in_doubt:
            if status.door_state == DoorState.CLOSED:
                # Shut, yet not verified (an offline lock's word may be stale): the relock
                # deadline raises the alarm unless the lock is secure by then.
                self._watch_relock(access_point, visit)
            return
        # `opened` false: the lock relocked itself (auto-relock) before anyone went in.
        self.record(EventKind.ENTRY_SECURED, {**data, "opened": visit.opened})
        visit.cancel_timers()
        self._close_visit(access_point)

    def _settle_doubt(self, access_point: str, visit: _Visit, data: dict[str, Any]) -> None:
        """The unlock a restart left in doubt has reported, done or failed: nobody waits
        for it any more, so a bolt it left off locked behind a shut door is thrown again
        at once, and watched; one still locked and shut ends the entry (`_maybe_secured`)."""
        if self._visits.get(access_point) is not visit:
            return
        status = self.locks[access_point].status()
        if status.door_state == DoorState.CLOSED and status.lock_state != LockState.LOCKED:
            self._relock(access_point)
            self._watch_relock(access_point, visit)
        else:
            self._maybe_secured(access_point, visit, data)

    def _relock(self, access_point: str) -> None:
        visit = self._visits.get(access_point)
        if visit is not None:
            visit.relock_unsent = False
        try:
            self.locks[access_point].lock(OperationSource.AUTO)
        except LockError:  # not sent (a radio blip): retried as a relock the lock refused
            log.warning("relock of %s failed; the entry stays open", access_point)
            if visit is not None:
                visit.relock_unsent = True  # sent again once the lock is reachable
                self._retry_relock(access_point, visit)

    # --- the camera ---------------------------------------------------------------------

    def _check_camera(self, access_point: str) -> None:
        camera = self.cameras.get(access_point)
        if camera is not None and not camera.liveness().live:
            state = camera.liveness().state
            raise Refusal(Reason.CAMERA_NOT_LIVE, f"camera is {state}, not live")

    def _on_camera(self, access_point: str, liveness: Liveness) -> None:
        """During an entry: a heartbeat to the service every report; and a stalled or
        frozen camera is an alarm at once (the door is already unlocked or the courier
        inside; the relock is still owed and still watched)."""
        with self._mutex:
            visit = self._visits.get(access_point)
            if visit is None:
                return
            self._send_beat(access_point, visit, liveness)
            if liveness.live:
                return
            data = {"access_point": access_point, "entry_id": visit.entry_id}
            self._alert(visit, Alert.CAMERA_LOST, {**data, "camera": str(liveness.state)})

    def _send_beat(self, access_point: str, visit: _Visit, liveness: Liveness) -> None:
        if self._client is None:
            return
        beat = CameraBeat(
            entry_id=visit.entry_id,
            access_point=access_point,
            state=str(liveness.state),
            frames=liveness.frames,
            frame_hash=liveness.frame_hash,
        )
        self._client.publish(self.topics.camera, beat.model_dump_json().encode(), qos=0)

    def _rearm(self, access_point: str, visit: _Visit) -> None:
        """Record a restored entry again (in its earlier window, when the camera kept
        it). A camera that cannot is logged, never fatal: the relock owed to the entry
        matters more than its video."""
        camera = self.cameras.get(access_point)
        if camera is None:
            return
        try:
            camera.arm(visit.entry_id)
        except VideoError:
            log.exception("entry %s at %s is not recorded", visit.entry_id, access_point)

    def _end_recording(self, access_point: str, entry_id: str) -> None:
        camera = self.cameras.get(access_point)
        if camera is None:
            return
        try:
            camera.disarm(entry_id)  # its clip comes to `_clip_recorded`
        except VideoError:  # never armed (its camera failed): the entry still ends
            log.exception("entry %s at %s has no recording to close", entry_id, access_point)

    def _clip_recorded(self, access_point: str, clip: Clip) -> None:
        self.record(
            EventKind.CLIP_RECORDED,
            {
                "access_point": access_point,
                "entry_id": clip.entry_id,
                "clip_id": clip.clip_id,
                "started_at": clip.started_at,
                "ended_at": clip.ended_at,
                "duration": round(clip.duration, 3),
                "complete": clip.complete,
            },
        )

    # --- watching the relock ------------------------------------------------------------

    def _watch_relock(self, access_point: str, visit: _Visit) -> None:
        """The door is shut: from now it has `deadline_seconds` to report locked."""
        if visit.deadline_timer is None:
            visit.deadline_timer = self._scheduler.call_later(
                self._policy.deadline_seconds, lambda: self._relock_deadline(access_point, visit)
            )

    def _watch_unopened(self, access_point: str, visit: _Visit) -> None:
        """Unlocked with the door shut: it must open within `unopened_seconds`."""
        if visit.unopened_timer is None:
            visit.unopened_timer = self._scheduler.call_later(
                self._policy.unopened_seconds, lambda: self._unopened_deadline(access_point, visit)
            )

    def _unopened_deadline(self, access_point: str, visit: _Visit) -> None:
        """Nobody went in (an opening cancels this): relock, and watch that relock as for
        a closed door."""
        with self._mutex:
            visit.unopened_timer = None
            unlocked = self.locks[access_point].status().lock_state != LockState.LOCKED
            if self._visits.get(access_point) is visit and unlocked:
                self._relock(access_point)
                self._watch_relock(access_point, visit)

    def _watch_door(self, access_point: str, visit: _Visit) -> None:
        if visit.deadline_timer is not None:  # open again: the relock clock restarts on close
            visit.deadline_timer.cancel()
            visit.deadline_timer = None
        if visit.door_timer is None:
            visit.door_timer = self._scheduler.call_later(
                self._door_open_left(visit), lambda: self._door_deadline(access_point, visit)
            )

    def _door_open_left(self, visit: _Visit) -> float:
        """How much longer the door may stand open: `door_open_seconds` from when it
        opened, which a restart keeps (none left: at once), or from now if unknown. A
        door that shut and opened again while the hub was down counts from the opening
        before: the alarm may come early, never late."""
        limit = self._policy.door_open_seconds
        if visit.opened_at is None:
            return limit
        return min(limit, max(0.0, limit - (self._clock() - visit.opened_at)))

    def _retry_relock(self, access_point: str, visit: _Visit) -> None:
        """A relock failed (a jam, a stalled motor, a request the radio did not carry): try
        again, a few times, while shut."""
        if visit.relock_attempts >= self._policy.retries:
            return
        visit.relock_attempts += 1

        def retry() -> None:
            with self._mutex:
                if self._visits.get(access_point) is not visit:
                    return
                status = self.locks[access_point].status()
                if status.door_state == DoorState.CLOSED and status.lock_state != LockState.LOCKED:
                    log.info("relock retry %d at %s", visit.relock_attempts, access_point)
                    self._relock(access_point)

        self._scheduler.call_later(self._policy.retry_seconds, retry)

    def _relock_deadline(self, access_point: str, visit: _Visit) -> None:
        """The door has been shut `deadline_seconds` (or `recheck_seconds` since the last
        look): secured if the lock now says so, else `relock_failed` (once) and another
        look in `recheck_seconds`. A lock that comes back online, its bolt thrown, may
        report no change at all; only looking again ends its entry. One back with its
        bolt still drawn, whose last relock could not be sent (out of reach through
        every retry), is relocked at that look; one that was asked and failed (a jam, a
        flat battery) is left to the alarm, not asked again every look."""
        with self._mutex:
            visit.deadline_timer = None
            if self._visits.get(access_point) is not visit:
                return
            visit.unlock_in_doubt = False  # no motor runs this long: the lock's word stands
            data = {"access_point": access_point, "entry_id": visit.entry_id}
            status = self.locks[access_point].status()
            if status.secure:
                self._maybe_secured(access_point, visit, data)
                return
            self._alert(visit, Alert.RELOCK_FAILED, data)
            if (
                visit.relock_unsent
                and status.online
                and status.door_state == DoorState.CLOSED
                and status.lock_state != LockState.LOCKED
            ):
                self._relock(access_point)
                if self._visits.get(access_point) is not visit:
                    return  # that relock secured the entry at once
            visit.deadline_timer = self._scheduler.call_later(
                self._policy.recheck_seconds, lambda: self._relock_deadline(access_point, visit)
            )

    def _door_deadline(self, access_point: str, visit: _Visit) -> None:
        with self._mutex:
            visit.door_timer = None
            door = self.locks[access_point].status().door_state
            if self._visits.get(access_point) is visit and door != DoorState.CLOSED:
                data = {"access_point": access_point, "entry_id": visit.entry_id}
                self._alert(visit, Alert.DOOR_HELD_OPEN, data)

    def _alert(self, visit: _Visit, alert: Alert, data: dict[str, Any]) -> None:
        """Raise an alert once per entry; the service tells the resident and the carrier."""
        if alert in visit.alerts:
            return
        visit.alerts.add(alert)
        log.warning("entry %s: %s", visit.entry_id, alert)
        status = self.locks[data["access_point"]].status()
        self.record(
            EventKind.ENTRY_ALERT,
            {
                **data,
                "alert": alert,
                "lock_state": int(status.lock_state),
                "door_state": int(status.door_state),
            },
        )

    def _open_visit(self, access_point: str, visit: _Visit) -> None:
        # Journalled, so a restart mid-entry still relocks. The bolt has moved already
        # (a code, the door opening): a journal that cannot write costs only that.
        try:
            self.journal.save_visit(
                access_point,
                visit.entry_id,
                visit.command_id,
                visit.replied,
                visit.opened,
                visit.opened_at,
            )
        except JournalError as exc:
            log.error(
                "entry %s at %s watched, not journalled: %s", visit.entry_id, access_point, exc
            )
        self._visits[access_point] = visit

    def _close_visit(self, access_point: str) -> None:
        """The entry at `access_point` is over, secured or failed: forget it (memory and
        journal) and close its camera window, so the clip shows how it ended and the
        camera stops keeping video for it."""
        visit = self._visits.pop(access_point, None)
        self._drop_visit(access_point)
        if visit is not None:
            self._end_recording(access_point, visit.entry_id)

    def _drop_visit(self, access_point: str) -> None:
        try:
            self.journal.drop_visit(access_point)
        except JournalError as exc:  # a restart resumes it: relocked, verified, ended again
            log.error("entry at %s ended, still journalled as open: %s", access_point, exc)


def _answers(visit: _Visit | None, event: LockOperation | LockOperationError) -> TypeGuard[_Visit]:
    """Whether `event` is the outcome of `visit`'s unlock command: the first unlock from a
    remote source since it was sent. The lock's button or thumb-turn meanwhile is not,
    nor another controller's command (`LockOperation.other_controller`)."""
    return (
        visit is not None
        and not visit.replied
        and event.operation == LockOperationType.UNLOCK
        and event.source == OperationSource.REMOTE
        and not event.other_controller
    )


def _ends_unlock(event: LockEvent) -> bool:
    """Whether `event` could be the outcome of an unlock the hub asked for (done or
    failed): the sources a lock names for a controller's command, or none, and not
    another controller's."""
    return (
        isinstance(event, (LockOperation, LockOperationError))
        and event.operation == LockOperationType.UNLOCK
        and event.source in _REQUEST_SOURCES
        and not event.other_controller
    )


def _is_lock_operation(event: LockEvent) -> bool:
    """Whether `event` may be the outcome of a LockDoor the hub sent."""
    return (
        isinstance(event, (LockOperation, LockOperationError))
        and event.operation == LockOperationType.LOCK
        and not event.other_controller
    )
