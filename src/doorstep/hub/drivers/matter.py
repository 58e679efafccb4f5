"""A Matter door lock reached through a python-matter-server (or compatible) WebSocket API.

`MatterLock` implements `hub.lock.LockDriver` for the Door Lock endpoint of one node.
It never speaks Matter itself: the Matter server owns the fabric, the CASE sessions and
the subscriptions, and relays them as JSON. Its parts live in `_matter/`: `client` (the
WebSocket API), `cluster` (Door Lock ids and payloads), `node` (what the node's
attributes and events mean for the hub's lock model), `config` (the settings).

- `unlock()`/`lock()` send UnlockDoor/LockDoor as timed invokes
  (`timed_request_timeout_ms`), carrying the configured PIN when the lock sets
  RequirePINforRemoteOperation (257/51), and return at once. Each request gets one
  outcome event: the lock's LockOperation or LockOperationError; or, if the server
  refuses the command, the connection drops before the answer, or the lock reports
  nothing within `operation_timeout`, a LockOperationError(UNSPECIFIED) made here. A lock
  that answers FAILURE and also reports its own LockOperationError is reported once.
- Only the hub's own controller answers a request: a remote (or unspecified) source,
  and FabricIndex and SourceNode naming the server's fabric (as the node's
  CurrentFabricIndex numbers it) and its controller (`controller_node_id`). A keypad,
  button or thumb-turn movement or refusal meanwhile is reported as itself, as is
  another controller's (another fabric's, or another node's on the server's: marked
  `other_controller`, so that the hub takes it for no outcome of its own either); so is
  an event the lock sent before it (`_matter/node.py`: a resubscription's replay is
  dropped). A bolt thrown answers every LockDoor waiting (the hub's and the one owed
  may get one report between them). Left open: an event that names no controller (a
  lock that leaves both unset, as the CHIP SDK's door lock server does not for a
  command it ran) answers as before, since nothing tells it from the hub's; and a
  controller sharing the hub's Matter server (Home Assistant on the same
  python-matter-server) is the same node on the same fabric, so the lock names both
  alike.
- The highest event number seen from the node outlives the driver in `event_marks` (the
  hub's journal), per commissioning: key `matter/<node_id>/<date_commissioned>`. It is
  read when a dump shows a commissioning not seen yet (at start, or after the lock was
  commissioned again), so that a replay coming before the first live event is still
  known as one. The delivery thread writes it, after delivering the events that raised
  it: the session thread and the hub's handling of an event never wait for that fsync,
  and a burst of events costs one write; `close()` returns once it is written. Left
  open: a crash in that moment lets those events' replay through once; events the lock
  sent while the hub was not listening are news if a replay brings them first; a dump
  without `date_commissioned` keeps nothing. A lock whose count went back without a new
  commissioning (against the spec) has its events dropped and its requests go
  unanswered: closed, and the overdue warning says why.
- Fail closed on an unlock with no known outcome: when the lock reports nothing in time,
  the connection drops before the server's answer, or the answer is an error that does
  not say the command never ran (an SDK error such as a lost InvokeResponse, error_code
  7; or an unknown error without the lock's own status), the bolt may still move after
  the hub reported the unlock as failed. So LockDoor (source AUTO) follows at once, or
  as soon as the lock is reachable again, so that a late unlock cannot leave the door
  open unnoticed. So does a LockDoor (the hub's or this one) cut off by a dropped
  connection: the bolt may still be drawn. A LockDoor met by silence or an SDK error is
  not sent again here: that is its error event, for the hub to retry. No UnlockDoor goes
  out ahead of the LockDoor owed: while one is owed, or is still awaiting its outcome,
  `unlock()` raises LockError (the lock is not ready) and nothing is sent.
- Online means connected to the server AND the node is known AND `available`. Otherwise
  `unlock()`, `lock()`, `refresh()` and the keypad methods raise LockError (fail closed).
  A dropped connection is retried with a capped exponential backoff until `close()`;
  every reconnect re-reads the node (start_listening's dump) and reports a lock or door
  change missed meanwhile (see `_matter/node.py`).
- Keypad users, PIN credentials and week-day / year-day schedules (`set_user`,
  `set_pin`, `set_week_day_schedule`, ...) wait for the lock's answer and raise
  LockError when it refuses. PIN codes are never logged nor put in messages.

Threads: the connection's session thread applies what the server says; events are
queued under the driver's mutex and delivered in order by one delivery thread, outside
the mutex, so a subscriber may call back in (`status`, `lock`, `unlock`, even the
keypad methods, which wait for an answer the session thread is free to read).

Verified against `tests/hub/drivers/matter_peer.py`, a loopback WebSocket peer that
speaks the server's message set, replays Home Assistant's recorded door-lock node dumps
and enforces timed invokes, the remote-PIN rule, motor time, jams and availability:
everything above. Not verified: commissioning and CASE (the server's job), a real lock
over Thread or Wi-Fi, a real server's relative order of a command's answer and the
lock's events (both orders are handled), and differences between server versions.

Build one with `MatterLock.from_config(mapping, event_marks=journal)`; the keys are in
`_matter/config.py` (`url` and `node_id` required; `endpoint`, `pin`, `timed_request_ms`,
timeouts, backoff). Without `event_marks`, event numbers count from the driver's start.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import time
from enum import Enum
from typing import Any, Protocol

from doorstep.hub.drivers._matter.client import (
    Backoff,
    CommandFailed,
    MatterServerConnection,
    MatterServerError,
    ServerInfo,
)
from doorstep.hub.drivers._matter.cluster import (
    DOOR_LOCK_CLUSTER,
    TIMED_COMMANDS,
    CredentialRule,
    DlStatus,
    DoorLockAttribute,
    clear_pin_payload,
    clear_schedule_payload,
    clear_user_payload,
    lock_payload,
    set_pin_payload,
    set_user_payload,
    week_day_schedule_payload,
    year_day_schedule_payload,
)
from doorstep.hub.drivers._matter.config import MatterLockConfig
from doorstep.hub.drivers._matter.node import LockNode, Origin
from doorstep.hub.keypad import DaysMask, UserStatus, UserType
from doorstep.hub.lock import (
    LockError,
    LockEvent,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockStatus,
    OperationError,
    OperationSource,
)

__all__ = [
    "CredentialRule",
    "DaysMask",
    "EventMarks",
    "MatterLock",
    "MatterLockConfig",
    "PinSet",
    "UserStatus",
    "UserType",
]

log = logging.getLogger(__name__)

IM_STATUS_FAILURE = 0x01
ERROR_UNKNOWN = 0  # python-matter-server's UnknownError: how a lock's IM status arrives
# Server errors that say the command never left the server: NodeNotReady,
# NodeNotResolving, NodeNotExists, InvalidArguments, InvalidCommand.
_NOT_SENT = frozenset({3, 4, 5, 8, 9})
_COMMANDS = {LockOperationType.LOCK: "LockDoor", LockOperationType.UNLOCK: "UnlockDoor"}
# Sources a lock may name for a command from a controller: only these answer a request.
_REQUEST_SOURCES = frozenset(
    {OperationSource.REMOTE, OperationSource.PROPRIETARY_REMOTE, OperationSource.UNSPECIFIED}
)


class EventMarks(Protocol):
    """Where the highest event number seen from a node outlives the driver
    (`hub.journal.Journal`)."""

    def lock_event_mark(self, lock: str) -> int | None: ...

    def raise_lock_event_mark(self, lock: str, event_number: int) -> None: ...


class _Chore(Enum):
    """Work for the delivery thread that is not an event to deliver."""

    SAVE_EVENT_MARK = "save the event mark"


@dataclass(frozen=True)
class PinSet:
    """The lock's answer to SetCredential: who holds the PIN, and the next free slot."""

    user_index: int | None
    next_credential_index: int | None


@dataclass(eq=False)
class _Request:
    """One LockDoor/UnlockDoor awaiting its outcome; compared by identity."""

    operation: LockOperationType
    source: OperationSource
    relock: bool = False  # the LockDoor owed (see the module docstring)
    answered: bool = False
    replays_before: int = 0  # the node's replays dropped before it was sent
    watchdog: threading.Timer | None = None


class MatterLock:
    """A Matter Door Lock endpoint behind a Matter server; implements `hub.lock.LockDriver`."""

    def __init__(self, config: MatterLockConfig, *, event_marks: EventMarks | None = None) -> None:
        self._config = config
        self._event_marks = event_marks
        self._saved_mark: int | None = None  # the node's event mark as last read or written
        self._mutex = threading.Lock()
        self._changed = threading.Condition(self._mutex)
        self._node = LockNode(
            config.node_id, config.endpoint, controller_node_id=config.controller_node_id
        )
        self._connected = False
        self._closed = False
        self._requests: defaultdict[LockOperationType, deque[_Request]] = defaultdict(deque)
        # FAILURE answers reported already, whose LockOperationError from the lock may follow.
        self._refused: Counter[LockOperationType] = Counter()
        # A LockDoor is owed: an unlock with no known outcome, or any request cut off.
        self._relock_owed = False
        self._subscribers: list[Callable[[LockEvent], None]] = []
        self._outbox: queue.SimpleQueue[LockEvent | _Chore | None] = queue.SimpleQueue()
        self._deliverer = threading.Thread(
            target=self._deliver_forever, name="matter-lock-events", daemon=True
        )
        self._connection = MatterServerConnection(
            config.url,
            _ServerListener(self),
            open_timeout=config.open_timeout,
            backoff=Backoff(config.reconnect_initial, config.reconnect_max),
        )
        self._deliverer.start()
        self._connection.start()

    @classmethod
    def from_config(
        cls, mapping: Mapping[str, Any], *, event_marks: EventMarks | None = None
    ) -> MatterLock:
        """Build and connect a lock from a settings mapping (`_matter/config.py`)."""
        return cls(MatterLockConfig.from_mapping(mapping), event_marks=event_marks)

    # --- LockDriver -------------------------------------------------------------------

    def status(self) -> LockStatus:
        with self._mutex:
            return self._snapshot()

    def subscribe(self, callback: Callable[[LockEvent], None]) -> None:
        with self._mutex:
            self._subscribers.append(callback)

    def unlock(self, source: OperationSource) -> None:
        self._request(LockOperationType.UNLOCK, source)

    def lock(self, source: OperationSource) -> None:
        self._request(LockOperationType.LOCK, source)

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            requests = [request for waiting in self._requests.values() for request in waiting]
            self._requests.clear()
            self._subscribers.clear()
            self._changed.notify_all()
        for request in requests:
            if request.watchdog is not None:
                request.watchdog.cancel()
        self._outbox.put(None)
        self._connection.close()
        if threading.current_thread() is not self._deliverer:
            self._deliverer.join(timeout=5)

    # --- beyond LockDriver --------------------------------------------------------------

    def wait_for_status(self, predicate: Callable[[LockStatus], bool], timeout: float) -> bool:
        """Wait up to `timeout` seconds until `predicate(status())` holds; say whether it did."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._snapshot()), timeout)

    def refresh(self) -> None:
        """Read LockState, DoorState and the remote-PIN rule from the lock; report changes."""
        paths = self._node.lock_paths(
            DoorLockAttribute.LOCK_STATE,
            DoorLockAttribute.DOOR_STATE,
            DoorLockAttribute.REQUIRE_PIN_FOR_REMOTE_OPERATION,
        )
        values = self._call(
            "read_attribute", {"node_id": self._config.node_id, "attribute_path": paths}
        )
        if not isinstance(values, dict):
            raise LockError("read_attribute did not answer with a map of values")
        with self._changed:
            self._queue(*self._node.apply_read(values))
            self._changed.notify_all()

    # --- keypad users, PIN credentials and schedules ------------------------------------

    def set_user(
        self,
        user_index: int,
        *,
        name: str | None = None,
        unique_id: int | None = None,
        user_type: UserType = UserType.UNRESTRICTED,
        status: UserStatus = UserStatus.OCCUPIED_ENABLED,
        credential_rule: CredentialRule = CredentialRule.SINGLE,
        modify: bool = False,
    ) -> None:
        """Add (or with `modify`, change) the user in slot `user_index`."""
        payload = set_user_payload(
            user_index,
            name=name,
            unique_id=unique_id,
            status=status,
            user_type=user_type,
            credential_rule=credential_rule,
            modify=modify,
        )
        self._invoke("SetUser", payload)
        log.info("user %d set on node %d", user_index, self._config.node_id)

    def clear_user(self, user_index: int) -> None:
        """Remove a user, and with it (per the spec) its credentials and schedules."""
        self._invoke("ClearUser", clear_user_payload(user_index))
        log.info("user %d cleared on node %d", user_index, self._config.node_id)

    def set_pin(
        self, credential_index: int, pin: str, *, user_index: int | None, modify: bool = False
    ) -> PinSet:
        """Store a keypad PIN in slot `credential_index` for `user_index` (None: a new user)."""
        with self._mutex:
            length = self._node.pin_length
        payload = set_pin_payload(
            credential_index, pin, user_index=user_index, length=length, modify=modify
        )
        answer = self._invoke("SetCredential", payload)
        if not isinstance(answer, dict):
            raise LockError("SetCredential did not answer with a SetCredentialResponse")
        status = answer.get("status")
        if status != DlStatus.SUCCESS:
            raise LockError(f"the lock refused PIN slot {credential_index}: {_dl_status(status)}")
        pin_set = PinSet(
            _int_or_none(answer.get("userIndex")), _int_or_none(answer.get("nextCredentialIndex"))
        )
        log.info(
            "PIN slot %d set for user %s on node %d",
            credential_index,
            pin_set.user_index,
            self._config.node_id,
        )
        return pin_set

    def clear_pin(self, credential_index: int) -> None:
        """Erase the PIN in slot `credential_index`."""
        self._invoke("ClearCredential", clear_pin_payload(credential_index))
        log.info("PIN slot %d cleared on node %d", credential_index, self._config.node_id)

    def set_week_day_schedule(
        self, index: int, user_index: int, days: DaysMask, start: time, end: time
    ) -> None:
        """Let `user_index` in on `days` between `start` and `end` (the lock's local time)."""
        payload = week_day_schedule_payload(index, user_index, days, start, end)
        self._invoke("SetWeekDaySchedule", payload)

    def clear_week_day_schedule(self, index: int, user_index: int) -> None:
        """Remove one week-day schedule (index 0xFE: all of this user's)."""
        self._invoke("ClearWeekDaySchedule", clear_schedule_payload("weekDay", index, user_index))

    def set_year_day_schedule(
        self, index: int, user_index: int, local_start: int, local_end: int
    ) -> None:
        """Let `user_index` in between two instants, epoch seconds in the lock's local time."""
        payload = year_day_schedule_payload(index, user_index, local_start, local_end)
        self._invoke("SetYearDaySchedule", payload)

    def clear_year_day_schedule(self, index: int, user_index: int) -> None:
        """Remove one year-day schedule (index 0xFE: all of this user's)."""
        self._invoke("ClearYearDaySchedule", clear_schedule_payload("yearDay", index, user_index))

    # --- lock and unlock requests -------------------------------------------------------

    def _request(self, operation: LockOperationType, source: OperationSource) -> None:
        with self._mutex:
            request, payload = self._begin(operation, source)
        self._send(request, payload)

    def _begin(
        self, operation: LockOperationType, source: OperationSource, *, relock: bool = False
    ) -> tuple[_Request, dict[str, Any]]:
        """Register a request to send, or raise LockError. Mutex held."""
        self._check_reachable()
        if operation == LockOperationType.UNLOCK and self._relock_due():
            raise LockError(f"node {self._config.node_id} is to be relocked first")
        payload = lock_payload(self._remote_pin())
        request = _Request(
            operation, source, relock=relock, replays_before=self._node.replays_dropped
        )
        self._requests[operation].append(request)
        self._refused[operation] = 0
        return request, payload

    def _relock_due(self) -> bool:
        """Whether a LockDoor is owed, or sent and awaiting its outcome. Mutex held."""
        moving = self._requests.get(LockOperationType.LOCK, ())
        return self._relock_owed or any(request.relock for request in moving)

    def _send(self, request: _Request, payload: dict[str, Any]) -> None:
        """Send a registered request, or raise LockError (a relock not sent stays owed)."""
        command = _COMMANDS[request.operation]
        try:
            future = self._connection.submit("device_command", self._command_args(command, payload))
        except MatterServerError as exc:
            with self._mutex:
                self._settle(request)
                self._relock_owed = self._relock_owed or request.relock
            raise LockError(f"{command} could not be sent: {exc}") from exc
        log.info("sent %s to node %d", command, self._config.node_id)
        self._arm_watchdog(request)
        future.add_done_callback(lambda done: self._on_answer(request, done))

    def _remote_pin(self) -> str | None:
        if not self._node.requires_pin:
            return None
        if self._config.pin is None:
            raise LockError("the lock requires a PIN for remote operation; none is configured")
        return self._config.pin

    def _arm_watchdog(self, request: _Request) -> None:
        timer = threading.Timer(self._config.operation_timeout, self._on_overdue, (request,))
        timer.daemon = True
        with self._mutex:
            if request.answered or self._closed:
                return
            request.watchdog = timer
            timer.start()

    def _on_answer(self, request: _Request, answer: Future[Any]) -> None:
        error = answer.exception()
        if error is None:
            return  # accepted: the lock's own events tell the outcome
        with self._mutex:
            if request.answered or self._closed:
                return
            self._settle(request)
            if isinstance(error, CommandFailed) and error.status == IM_STATUS_FAILURE:
                self._refused[request.operation] += 1
            self._fail(request)
            # No word that it never ran: the lock may have taken it all the same.
            if not isinstance(error, CommandFailed):
                self._relock_owed = True  # cut off: paid once the lock is reachable again
            elif not _never_ran(error):
                self._owe_relock(request)
        log.warning("%s failed or got no answer: %s", _COMMANDS[request.operation], error)
        self._pay_relock()

    def _on_overdue(self, request: _Request) -> None:
        with self._mutex:
            if request.answered or self._closed:
                return
            self._settle(request)
            self._fail(request)
            self._owe_relock(request)
            dropped = self._node.replays_dropped - request.replays_before
            mark = self._node.event_mark
        log.warning(
            "node %d reported no outcome of %s within %s s",
            self._config.node_id,
            _COMMANDS[request.operation],
            self._config.operation_timeout,
        )
        if dropped:
            log.warning(
                "node %d: meanwhile %d of its events were numbered %s or below, the highest"
                " seen from it, and dropped as replays; if the lock numbers its events anew"
                " without being commissioned again (against the spec), commission it again",
                self._config.node_id,
                dropped,
                mark,
            )
        self._pay_relock()

    def _owe_relock(self, request: _Request) -> None:
        if request.operation == LockOperationType.UNLOCK:
            self._relock_owed = True

    def _pay_relock(self) -> None:
        """Send the LockDoor owed, if the lock is reachable now; otherwise it stays owed
        until the lock is reachable again. Until its outcome, no unlock is sent (`_begin`).
        Never call it with the mutex held."""
        with self._mutex:
            if not self._relock_owed or self._closed:
                return
            try:
                self._check_reachable()
            except LockError:
                return
            try:
                request, payload = self._begin(
                    LockOperationType.LOCK, OperationSource.AUTO, relock=True
                )
            except LockError as exc:  # no PIN for a lock that wants one
                log.warning("relock after an unlock with no known outcome failed: %s", exc)
                return
            self._relock_owed = False
        try:
            self._send(request, payload)
        except LockError as exc:
            log.warning("relock after an unlock with no known outcome failed: %s", exc)

    def _fail(self, request: _Request) -> None:
        self._queue(
            LockOperationError(request.operation, request.source, OperationError.UNSPECIFIED)
        )

    def _settle(self, request: _Request) -> None:
        request.answered = True
        if request.watchdog is not None:
            request.watchdog.cancel()
        waiting = self._requests.get(request.operation)
        if waiting and request in waiting:
            waiting.remove(request)

    def _settle_answered(self, event: LockOperation | LockOperationError) -> bool:
        """Settle the request `event` answers, the oldest of its kind; a bolt thrown
        answers every LockDoor waiting, each of which asked for just that. Say whether
        there was one."""
        waiting = list(self._requests.get(event.operation, ()))
        thrown = isinstance(event, LockOperation) and event.operation == LockOperationType.LOCK
        answered = waiting if thrown else waiting[:1]
        for request in answered:
            self._settle(request)
        return bool(answered)

    def _reported(self, event: LockEvent, origin: Origin) -> None:
        """Queue an event from the lock, matching it with the request it answers."""
        if isinstance(event, LockOperation | LockOperationError):
            answered = _answers(event, origin) and self._settle_answered(event)
            if origin == Origin.OTHER:
                self._explain_unanswered(event)
                event = dataclasses.replace(event, other_controller=True)
            elif not answered and self._echoes_refusal(event):
                return  # the lock's own word on a refusal already reported from the answer
        self._queue(event)

    def _echoes_refusal(self, event: LockOperation | LockOperationError) -> bool:
        """Whether `event` (not another controller's) is the lock's LockOperationError for
        a FAILURE answer reported already; it is then counted as heard."""
        operation = event.operation
        if not isinstance(event, LockOperationError) or not self._refused[operation]:
            return False
        if event.source != OperationSource.REMOTE:
            return False
        self._refused[operation] -= 1
        return True

    def _explain_unanswered(self, event: LockOperation | LockOperationError) -> None:
        """Log that another controller's operation left the hub's request waiting."""
        if not self._requests.get(event.operation):
            return
        log.warning(
            "node %d: %s %s by another controller is not the outcome of the hub's (fabric"
            " index %s, node %d); if the Matter server's controller has another node id,"
            " set controller_node_id",
            self._config.node_id,
            type(event).__name__,
            event.operation.name,
            self._node.fabric_index,
            self._config.controller_node_id,
        )

    # --- commands and reads that wait for their answer ----------------------------------

    def _invoke(self, command: str, payload: dict[str, Any]) -> Any:
        return self._call("device_command", self._command_args(command, payload))

    def _call(self, command: str, args: dict[str, Any]) -> Any:
        with self._mutex:
            self._check_reachable()
        try:
            return self._connection.call(command, args, timeout=self._config.command_timeout)
        except MatterServerError as exc:
            raise LockError(f"node {self._config.node_id}: {exc}") from exc

    def _command_args(self, command: str, payload: dict[str, Any]) -> dict[str, Any]:
        timed = self._config.timed_request_ms if command in TIMED_COMMANDS else None
        return {
            "node_id": self._config.node_id,
            "endpoint_id": self._config.endpoint,
            "cluster_id": DOOR_LOCK_CLUSTER,
            "command_name": command,
            "payload": payload,
            "response_type": None,
            "timed_request_timeout_ms": timed,
            "interaction_timeout_ms": None,
        }

    def _check_reachable(self) -> None:
        node_id = self._config.node_id
        if self._closed:
            raise LockError("lock driver is closed")
        if not self._connected:
            raise LockError("not connected to the Matter server")
        if not self._node.known:
            raise LockError(f"node {node_id} is not on the Matter server")
        if not self._node.available:
            raise LockError(f"node {node_id} is unavailable")

    # --- what the server says (its session thread) --------------------------------------

    def _on_connected(self, nodes: list[dict[str, Any]]) -> None:
        node = next((node for node in nodes if node.get("node_id") == self._config.node_id), None)
        with self._changed:
            self._connected = True
            self._load(node)
            self._changed.notify_all()
        self._pay_relock()

    def _on_disconnected(self) -> None:
        with self._changed:
            self._connected = False
            self._changed.notify_all()

    def _on_event(self, event: str, data: Any) -> None:
        with self._changed:
            if event == "attribute_updated":
                self._queue(*self._node.attribute_updated(data))
            elif event == "node_event":
                mark = self._node.event_mark
                for reported, origin in self._node.node_event(data):
                    self._reported(reported, origin)
                if self._node.event_mark != mark and self._event_marks is not None:
                    self._queue(_Chore.SAVE_EVENT_MARK)
            elif event in ("node_added", "node_updated"):
                if isinstance(data, dict) and data.get("node_id") == self._config.node_id:
                    self._load(data)
            elif event == "node_removed" and data == self._config.node_id:
                self._load(None)
            self._changed.notify_all()
        self._pay_relock()

    def _load(self, node: dict[str, Any] | None) -> None:
        commissioned = self._node.commissioned
        self._queue(*self._node.load(node))
        if self._node.commissioned != commissioned:
            self._recall_event_mark()
        if not self._node.known:
            log.error("node %d is not on the Matter server", self._config.node_id)
        elif not self._node.available:
            log.warning("node %d is unavailable", self._config.node_id)

    # --- the node's event mark, kept across restarts ------------------------------------

    def _event_mark_key(self) -> str | None:
        commissioned = self._node.commissioned
        return None if commissioned is None else f"matter/{self._config.node_id}/{commissioned}"

    def _recall_event_mark(self) -> None:
        """Count the node's events, in a commissioning first seen, from the highest number
        kept for it. Mutex held."""
        self._saved_mark = None
        key = self._event_mark_key()
        if key is None or self._event_marks is None:
            return
        try:
            self._saved_mark = self._event_marks.lock_event_mark(key)
        except Exception:  # the store's own failure: go on as if it kept nothing
            log.exception("could not read the event mark of node %d", self._config.node_id)
            return
        if self._saved_mark is None:
            log.info("node %d (%s): no event seen before", self._config.node_id, key)
            return
        self._node.recall_event_mark(self._saved_mark)
        log.info(
            "node %d (%s): events up to number %d were seen before; a replay of them is dropped",
            self._config.node_id,
            key,
            self._saved_mark,
        )

    def _save_event_mark(self) -> None:
        """Record the highest event number seen, if it rose since it was last recorded
        (the delivery thread, after the events that raised it)."""
        with self._mutex:
            key, mark, saved = self._event_mark_key(), self._node.event_mark, self._saved_mark
        if self._event_marks is None or key is None or mark is None:
            return
        if saved is not None and mark <= saved:
            return  # a burst of events: recorded already, with the last of them
        self._event_marks.raise_lock_event_mark(key, mark)
        with self._mutex:
            if self._event_mark_key() == key:
                self._saved_mark = mark

    # --- state and event delivery -------------------------------------------------------

    def _snapshot(self) -> LockStatus:
        node = self._node
        return LockStatus(
            lock_state=node.lock_state,
            door_state=node.door_state,
            battery_percent=node.battery_percent,
            jammed=node.jammed,
            online=not self._closed and self._connected and node.known and node.available,
        )

    def _queue(self, *items: LockEvent | _Chore) -> None:
        if not self._closed:
            for item in items:
                self._outbox.put(item)

    def _deliver_forever(self) -> None:
        while (item := self._outbox.get()) is not None:
            if item is _Chore.SAVE_EVENT_MARK:
                _attempt(self._save_event_mark, "recording the node's event mark")
                continue
            with self._mutex:
                subscribers = tuple(self._subscribers)
            for callback in subscribers:
                _notify(callback, item)


class _ServerListener:
    """Hands the connection's callbacks to the lock without making them public methods."""

    def __init__(self, lock: MatterLock) -> None:
        self._lock = lock

    def on_connected(self, info: ServerInfo, nodes: list[dict[str, Any]]) -> None:
        self._lock._on_connected(nodes)

    def on_event(self, event: str, data: Any) -> None:
        self._lock._on_event(event, data)

    def on_disconnected(self) -> None:
        self._lock._on_disconnected()


def _notify(callback: Callable[[LockEvent], None], event: LockEvent) -> None:
    # One faulty subscriber must not stop the others from hearing about the lock.
    try:
        callback(event)
    except Exception:
        log.exception("lock event subscriber failed on %r", event)


def _attempt(chore: Callable[[], None], what: str) -> None:
    # The delivery thread is a process edge: a failed chore must not stop the events.
    try:
        chore()
    except Exception:
        log.exception("%s failed", what)


def _answers(event: LockOperation | LockOperationError, origin: Origin) -> bool:
    """Whether a lock event may be the outcome of a request of the hub's: a controller's
    command (not a keypad, button or hand) that names the hub's, or none."""
    return event.source in _REQUEST_SOURCES and origin != Origin.OTHER


def _never_ran(error: CommandFailed) -> bool:
    """Whether an error answer says the command did not run: the lock's own status
    (an InteractionModelError) or a server refusal before sending."""
    if error.error_code in _NOT_SENT:
        return True
    return error.error_code == ERROR_UNKNOWN and error.status is not None


def _dl_status(status: object) -> str:
    if isinstance(status, int):
        try:
            return DlStatus(status).name
        except ValueError:
            pass
    return repr(status)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
