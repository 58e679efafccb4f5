"""A stand-in python-matter-server: its WebSocket API on loopback, in front of one door lock.

It speaks the server's message set (server info on connect; `start_listening`,
`get_nodes`, `get_node`, `read_attribute`, `device_command`, `server_info`; results,
errors with `error_code` and `details`; events `attribute_updated`, `node_event`,
`node_updated`) and replays a real node dump (fixtures/matter_fixtures.md). Behind it,
it plays the lock and enforces what a lock enforces, so a driver that forgets fails:
- a timed-only command (UnlockDoor, LockDoor, SetUser, SetCredential, ...) without
  `timed_request_timeout_ms` is refused with NEEDS_TIMED_INTERACTION (0xC6);
- with RequirePINforRemoteOperation (1/257/51) true, a missing or wrong PINCode gets
  FAILURE (0x01) and a LockOperationError event (InvalidCredential), in the order
  `error_event_first` says;
- the bolt moves `motor_seconds` after the command is accepted: a LockState
  `attribute_updated`, then a LockOperation event; with `motor_jammed` it stalls instead:
  LockState NotFullyLocked, DoorLockAlarm LockJammed, LockOperationError;
- an unavailable node gets NodeNotReady (error_code 3) and is announced with
  `node_updated`; commands outside the node's FeatureMap or AcceptedCommandList get
  UNSUPPORTED_COMMAND; users, PIN credentials and schedules follow the spec's checks;
- every event is numbered from one node-wide counter and kept: `replay_events()` sends
  them all again with their old numbers, as python-matter-server forwards them when the
  SDK resubscribes to the node (it subscribes with no event-number filter);
  `recommission()` starts the count again under a new `date_commissioned`, and
  `lose_event_count()` without one (a firmware fault);
- with `lose_answers`, lock and unlock still reach the motor but are answered with
  SDKStackError (error_code 7), as when the lock's InvokeResponse is lost on the radio;
- a LockOperation or LockOperationError names the controller that asked for it, as the
  spec has a lock do: FabricIndex, the lock's index of the server's fabric (the node's
  CurrentFabricIndex, 0/62/5), and SourceNode, the server's controller node
  (`controller_node`, 112233 as python-matter-server's is); with `names_controller`
  false both are null, as a lock that leaves them unset sends them. `operate_for()` and
  `refuse_for()` are another controller's LockDoor/UnlockDoor (another fabric's, or
  another node on the server's): the bolt moves, or the lock refuses, naming it;
- with `refusal_events` false, a refused PIN gets FAILURE and no LockOperationError.
Errors look as python-matter-server sends them: the SDK's InteractionModelError is not a
ChipStackError, so it arrives as error_code 0 with `str(err)` in `details`.

Not modelled: wrong-code lockout, auto-relock, holiday schedules, other clusters.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

FIXTURES = Path(__file__).parent / "fixtures"
ENDPOINT = 1
DOOR_LOCK = 257
SERVER_INFO = {
    "fabric_id": 1,
    "compressed_fabric_id": 0x1234ABCD,
    "schema_version": 11,
    "min_supported_schema_version": 9,
    "sdk_version": "matter-peer",
    "wifi_credentials_set": False,
    "thread_credentials_set": False,
    "bluetooth_enabled": False,
}
SOURCE_REMOTE = 7
# The node id the CHIP SDK's FabricAdmin gives its first controller, which is what
# python-matter-server's controller is; the fixtures' ACL grants it Administer.
CONTROLLER_NODE = 112233
CURRENT_FABRIC_INDEX = "0/62/5"  # the server's fabric, as the lock numbers it

# Command name -> (command id, FeatureMap bit it needs or None, timed invoke required).
COMMANDS: dict[str, tuple[int, int | None, bool]] = {
    "LockDoor": (0x00, None, True),
    "UnlockDoor": (0x01, None, True),
    "SetWeekDaySchedule": (0x0B, 1 << 4, False),
    "ClearWeekDaySchedule": (0x0D, 1 << 4, False),
    "SetYearDaySchedule": (0x0E, 1 << 10, False),
    "ClearYearDaySchedule": (0x10, 1 << 10, False),
    "SetUser": (0x1A, 1 << 8, True),
    "ClearUser": (0x1D, 1 << 8, True),
    "SetCredential": (0x22, 1 << 8, True),
    "ClearCredential": (0x26, 1 << 8, True),
}
IM_STATUS = {
    0x01: "Failure",
    0x81: "UnsupportedCommand",
    0x85: "InvalidCommand",
    0x8B: "NotFound",
    0x7F: "UnsupportedEndpoint",
    0xC3: "UnsupportedCluster",
    0xC6: "NeedsTimedInteraction",
}


# A ChipStackError as python-matter-server answers it (ErrorCode.STACK_ERROR, str(err)).
LOST_ANSWER = {"error_code": 7, "details": "CHIP Error 0x00000032: Timeout"}
_MOVES = ("LockDoor", "UnlockDoor")


def load_node(name: str = "matter_door_lock.json") -> dict[str, Any]:
    node: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return node


class Refused(Exception):
    """An error answer: `error_code` and `details` as the server puts them."""

    def __init__(self, error_code: int, details: str) -> None:
        super().__init__(details)
        self.error_code = error_code
        self.details = details


def im_error(status: int) -> Refused:
    return Refused(0, f"InteractionModelError: {IM_STATUS[status]} (0x{status:x})")


class _QuietFrames(logging.LoggerAdapter[logging.Logger]):
    """Keeps websockets from logging frames (they carry PINs) into the tests' caplog."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    listening: bool = False


class MatterServerPeer:
    """One Matter server with one door lock node; knobs for the tests are plain attributes."""

    def __init__(self, node: dict[str, Any], *, motor_seconds: float = 0.02) -> None:
        self.node = copy.deepcopy(node)
        self.node_id: int = node["node_id"]
        self.motor_seconds = motor_seconds
        self.motor_jammed = False  # every movement stalls half-way while set
        self.silent = False  # accept lock/unlock, then report nothing
        self.hold_answers = False  # never answer device_command
        self.error_event_first = True  # FAILURE: LockOperationError event before the answer
        self.refusal_events = True  # FAILURE comes with its LockOperationError event
        self.controller_node = CONTROLLER_NODE  # the server's own controller
        self.names_controller = True  # operation events carry FabricIndex and SourceNode
        self.lose_answers = False  # LockDoor/UnlockDoor run, answered with a stack error
        self.refuse_connections = False  # close every new connection before server info
        self.commands: list[dict[str, Any]] = []  # every device_command's args, in order
        self.accepted = 0  # lock/unlock commands that reached the motor
        self.listen_count = 0
        self.users: dict[int, dict[str, Any]] = {}
        self.pins: dict[int, dict[str, Any]] = {}  # credential index -> {"pin", "user"}
        self.week_days: dict[tuple[int, int], dict[str, Any]] = {}  # (user, index)
        self.year_days: dict[tuple[int, int], dict[str, Any]] = {}
        self._mutex = threading.RLock()
        self._listened = threading.Condition(self._mutex)
        self._clients: list[_Client] = []
        self._timers: list[threading.Timer] = []
        self._event_numbers = itertools.count(1)
        self.history: list[dict[str, Any]] = []  # every node_event sent, in order
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> MatterServerPeer:
        logger = _QuietFrames(logging.getLogger("matter_peer"), {})
        self._server = serve(self._handle, "127.0.0.1", 0, logger=logger)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._mutex:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
        self.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    def wait_for_listeners(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until `start_listening` has been received `count` times in all."""
        with self._listened:
            return self._listened.wait_for(lambda: self.listen_count >= count, timeout)

    # --- the world around the lock (what tests do) ----------------------------------------

    def attribute(self, path: str) -> Any:
        with self._mutex:
            return self.node["attributes"].get(path)

    def set_attribute(self, path: str, value: Any, *, announce: bool = True) -> None:
        """Change an attribute on the lock; unannounced, only a read or a re-listen sees it."""
        with self._mutex:
            if announce:
                self._set_attribute(path, value)
            else:
                self.node["attributes"][path] = value

    def set_available(self, available: bool) -> None:
        with self._mutex:
            self.node["available"] = available
            self._broadcast("node_updated", self.node)

    def finish_move(self, operation: int) -> None:
        """The bolt ends a movement the lock was silent about (0 locked, 1 unlocked):
        its LockState report, then its LockOperation event."""
        self._finish(operation, None)

    def operate_for(self, operation: int, *, fabric_index: int, source_node: int) -> None:
        """Another controller's LockDoor (0) or UnlockDoor (1), on the lock's fabric
        `fabric_index` as node `source_node`, moves the bolt: its LockState report, then
        the LockOperation naming that controller."""
        self._finish(operation, None, (fabric_index, source_node))

    def refuse_for(self, operation: int, *, fabric_index: int, source_node: int) -> None:
        """The lock refuses another controller's LockDoor (0) or UnlockDoor (1), a wrong
        PIN: the LockOperationError naming that controller."""
        with self._mutex:
            fields = self._operation_fields(operation, None, (fabric_index, source_node))
            self._emit(3, {**fields, "operationError": 1})

    def open_door(self) -> None:
        self._move_door(0)

    def close_door(self) -> None:
        self._move_door(1)

    def replay_events(self) -> None:
        """Send every event again, unchanged: a resubscription's replay of the lock's
        event buffer, as python-matter-server forwards it."""
        with self._mutex:
            for event in list(self.history):
                self._broadcast("node_event", event)

    def recommission(self, date_commissioned: str) -> None:
        """The lock is reset and commissioned again under the same node id (the server's
        storage was wiped): a new `date_commissioned` in the node dump, and the lock
        numbers its events from 1 again, its old buffer gone."""
        with self._mutex:
            self.node["date_commissioned"] = date_commissioned
            self._forget_events()

    def lose_event_count(self) -> None:
        """The lock reboots and numbers its events from 1 again, as firmware that does
        not keep its count would (the spec forbids it); the node is otherwise the same."""
        with self._mutex:
            self._forget_events()

    def drop_connections(self) -> None:
        """Cut every connection at the TCP level, as a crashed server or a Wi-Fi drop would."""
        with self._mutex:
            clients = list(self._clients)
        for client in clients:
            client.ws.close_socket()

    def add_pin_user(self, user_index: int, credential_index: int, pin: str) -> None:
        with self._mutex:
            self.users[user_index] = {"userStatus": 1, "userType": 0, "credentialRule": 0}
            self.pins[credential_index] = {"pin": pin, "user": user_index}

    def _forget_events(self) -> None:
        self._event_numbers = itertools.count(1)
        self.history.clear()

    def _move_door(self, door_state: int) -> None:
        with self._mutex:
            self._set_attribute(f"{ENDPOINT}/{DOOR_LOCK}/3", door_state)
            self._emit(1, {"doorState": door_state})

    # --- connections --------------------------------------------------------------------

    def _handle(self, ws: ServerConnection) -> None:
        if self.refuse_connections:
            ws.close()
            return
        client = _Client(ws)
        with self._mutex:
            self._clients.append(client)
        try:
            self._send(client, SERVER_INFO)
            for raw in ws:
                self._on_message(client, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            with self._mutex:
                self._clients.remove(client)

    def _on_message(self, client: _Client, message: dict[str, Any]) -> None:
        message_id, command = message.get("message_id"), message.get("command")
        args = message.get("args") or {}
        if command == "start_listening":
            self._start_listening(client, message_id)
            return
        handlers: dict[str, Callable[[dict[str, Any], list[Callable[[], None]]], Any]] = {
            "server_info": lambda _args, _after: SERVER_INFO,
            "get_nodes": lambda _args, _after: [self.node],
            "get_node": self._get_node,
            "read_attribute": self._read_attribute,
            "device_command": self._device_command,
        }
        after: list[Callable[[], None]] = []  # events that follow the answer
        with self._mutex:
            handler = handlers.get(str(command))
            try:
                if handler is None:
                    raise Refused(9, f"Invalid command: {command}")
                reply = {"message_id": message_id, "result": handler(args, after)}
            except Refused as refused:
                reply = {
                    "message_id": message_id,
                    "error_code": refused.error_code,
                    "details": refused.details,
                }
            moved = command == "device_command" and args.get("command_name") in _MOVES
            if moved and self.lose_answers and "result" in reply:
                reply = {"message_id": message_id, **LOST_ANSWER}
            if not (command == "device_command" and self.hold_answers):
                self._send(client, reply)
            for action in after:
                action()

    def _start_listening(self, client: _Client, message_id: Any) -> None:
        with self._listened:
            self._send(client, {"message_id": message_id, "result": [self.node]})
            client.listening = True
            self.listen_count += 1
            self._listened.notify_all()

    def _send(self, client: _Client, message: Any) -> None:
        # A closed connection is left to its reader thread, which forgets the client.
        with client.send_lock, suppress(ConnectionClosed):
            client.ws.send(json.dumps(message))

    def _broadcast(self, event: str, data: Any) -> None:
        for client in self._clients:
            if client.listening:
                self._send(client, {"event": event, "data": data})

    def _set_attribute(self, path: str, value: Any) -> None:
        self.node["attributes"][path] = value
        if self.node["available"]:
            self._broadcast("attribute_updated", [self.node_id, path, value])

    def _emit(self, event_id: int, data: dict[str, Any]) -> None:
        if not self.node["available"]:
            return  # the server hears nothing from a node it cannot reach
        event = {
            "node_id": self.node_id,
            "endpoint_id": ENDPOINT,
            "cluster_id": DOOR_LOCK,
            "event_id": event_id,
            "event_number": next(self._event_numbers),
            "priority": 2,  # critical
            "timestamp": int(time.time() * 1000),
            "timestamp_type": 1,  # epoch
            "data": data,
        }
        self.history.append(event)
        self._broadcast("node_event", event)

    # --- server commands ----------------------------------------------------------------

    def _get_node(self, args: dict[str, Any], _after: list[Callable[[], None]]) -> Any:
        if args.get("node_id") != self.node_id:
            raise Refused(5, f"Node {args.get('node_id')} does not exist or is not yet interviewed")
        return self.node

    def _read_attribute(self, args: dict[str, Any], _after: list[Callable[[], None]]) -> Any:
        self._check_ready(args)
        paths = args.get("attribute_path")
        paths = paths if isinstance(paths, list) else [paths]
        attributes = self.node["attributes"]
        return {path: attributes[path] for path in paths if path in attributes}

    def _check_ready(self, args: dict[str, Any]) -> None:
        self._get_node(args, [])
        if not self.node["available"]:
            raise Refused(3, f"Node {self.node_id} is not (yet) available.")

    def _device_command(self, args: dict[str, Any], after: list[Callable[[], None]]) -> Any:
        self.commands.append(copy.deepcopy(args))
        self._check_ready(args)
        if args.get("endpoint_id") != ENDPOINT:
            raise im_error(0x7F)
        if args.get("cluster_id") != DOOR_LOCK:
            raise im_error(0xC3)
        name = str(args.get("command_name"))
        command_id, feature, timed = COMMANDS.get(name, (None, None, False))
        accepted = self._lock_attribute(65529) or []
        features = self._lock_attribute(65532) or 0
        if command_id is None or command_id not in accepted:
            raise im_error(0x81)
        if feature is not None and not features & feature:
            raise im_error(0x81)
        if timed and not args.get("timed_request_timeout_ms"):
            raise im_error(0xC6)
        payload = args.get("payload") or {}
        return self._lock_commands[name](payload, after)

    # --- the lock -----------------------------------------------------------------------

    @property
    def _lock_commands(
        self,
    ) -> dict[str, Callable[[dict[str, Any], list[Callable[[], None]]], Any]]:
        return {
            "LockDoor": lambda payload, after: self._move(0, payload, after),
            "UnlockDoor": lambda payload, after: self._move(1, payload, after),
            "SetUser": self._set_user,
            "ClearUser": self._clear_user,
            "SetCredential": self._set_credential,
            "ClearCredential": self._clear_credential,
            "SetWeekDaySchedule": self._set_week_day,
            "ClearWeekDaySchedule": self._clear_week_day,
            "SetYearDaySchedule": self._set_year_day,
            "ClearYearDaySchedule": self._clear_year_day,
        }

    def _lock_attribute(self, attribute: int) -> Any:
        return self.node["attributes"].get(f"{ENDPOINT}/{DOOR_LOCK}/{attribute}")

    def _move(
        self, operation: int, payload: dict[str, Any], after: list[Callable[[], None]]
    ) -> None:
        user = self._remote_user(payload.get("PINCode"))
        if user is False:
            refusal = {**self._operation_fields(operation, None), "operationError": 1}
            report: Callable[[], None] = lambda: self._emit(3, refusal)  # noqa: E731
            if self.refusal_events and self.error_event_first:
                report()
            elif self.refusal_events:
                after.append(report)
            raise im_error(0x01)
        self.accepted += 1
        if not self.silent:
            self._later(self.motor_seconds, lambda: self._finish(operation, user or None))

    def _remote_user(self, encoded_pin: Any) -> int | bool | None:
        """The PIN's user; None when no PIN is needed nor given; False when refused."""
        required = self._lock_attribute(51) is True
        if encoded_pin is None:
            return False if required else None
        try:
            pin = base64.b64decode(str(encoded_pin), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        for slot in self.pins.values():
            user = self.users.get(slot["user"], {})
            if slot["pin"] == pin and user.get("userStatus") == 1:
                return int(slot["user"])
        return False

    def _finish(
        self, operation: int, user: int | None, controller: tuple[int, int] | None = None
    ) -> None:
        with self._mutex:
            lock_state = f"{ENDPOINT}/{DOOR_LOCK}/0"
            fields = self._operation_fields(operation, user, controller)
            if self.motor_jammed:
                self._set_attribute(lock_state, 0)
                self._emit(0, {"alarmCode": 0})
                self._emit(3, {**fields, "operationError": 0})
                return
            self._set_attribute(lock_state, 1 if operation == 0 else 2)
            self._emit(2, fields)

    def _operation_fields(
        self, operation: int, user: int | None, controller: tuple[int, int] | None = None
    ) -> dict[str, Any]:
        """A LockOperation's fields, naming `controller` (fabric index, node) or else the
        server's own."""
        credentials = None
        if user is not None:
            slots = [index for index, slot in self.pins.items() if slot["user"] == user]
            credentials = [{"credentialType": 1, "credentialIndex": index} for index in slots]
        return {
            "lockOperationType": operation,
            "operationSource": SOURCE_REMOTE,
            "userIndex": user,
            **self._named(controller),
            "credentials": credentials,
        }

    def _named(self, controller: tuple[int, int] | None = None) -> dict[str, Any]:
        """FabricIndex and SourceNode of an event `controller` caused (None: the server's)."""
        if controller is None and not self.names_controller:
            return {"fabricIndex": None, "sourceNode": None}
        fabric_index, node = controller or (
            self.node["attributes"][CURRENT_FABRIC_INDEX],
            self.controller_node,
        )
        return {"fabricIndex": fabric_index, "sourceNode": node}

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(delay, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _user_changed(self, data_type: int, operation: int, user: int | None, index: int) -> None:
        self._emit(
            4,
            {
                "lockDataType": data_type,
                "dataOperationType": operation,
                "operationSource": SOURCE_REMOTE,
                "userIndex": user,
                **self._named(),
                "dataIndex": index,
            },
        )

    # --- users and credentials ----------------------------------------------------------

    def _set_user(self, payload: dict[str, Any], _after: list[Callable[[], None]]) -> None:
        index, operation = payload.get("userIndex"), payload.get("operationType")
        if not isinstance(index, int) or not 1 <= index <= self._lock_attribute(17):
            raise im_error(0x85)
        if operation == 2 and index not in self.users:
            raise im_error(0x85)
        if operation == 0 and index in self.users:
            raise im_error(0x01)
        self.users[index] = {
            "userName": payload.get("userName"),
            "userStatus": payload.get("userStatus") or 1,
            "userType": payload.get("userType") or 0,
            "credentialRule": payload.get("credentialRule") or 0,
        }
        self._user_changed(2, int(operation or 0), index, index)

    def _clear_user(self, payload: dict[str, Any], _after: list[Callable[[], None]]) -> None:
        index = payload.get("userIndex")
        doomed: set[Any] = set(self.users) if index == 0xFFFE else {index}
        for user in doomed:
            self.users.pop(user, None)
            for slot in [slot for slot, pin in self.pins.items() if pin["user"] == user]:
                del self.pins[slot]
            for schedules in (self.week_days, self.year_days):
                for key in [key for key in schedules if key[0] == user]:
                    del schedules[key]
        self._user_changed(2, 1, index if isinstance(index, int) else None, 0)

    def _set_credential(self, payload: dict[str, Any], _after: list[Callable[[], None]]) -> Any:
        credential = payload.get("credential") or {}
        index = credential.get("credentialIndex")
        if credential.get("credentialType") != 1 or not isinstance(index, int):
            return self._credential_answer(0x85, None)
        pin = base64.b64decode(str(payload.get("credentialData"))).decode()
        shortest, longest = self._lock_attribute(24), self._lock_attribute(23)
        if not (pin.isdigit() and shortest <= len(pin) <= longest):
            return self._credential_answer(0x85, None)
        modify = payload.get("operationType") == 2
        if (index in self.pins) != modify:
            return self._credential_answer(0x85 if modify else 0x03, None)
        if any(slot["pin"] == pin for number, slot in self.pins.items() if number != index):
            return self._credential_answer(0x02, None)
        user = payload.get("userIndex")
        if user is None:
            user = next(number for number in itertools.count(1) if number not in self.users)
        self.users.setdefault(user, {"userStatus": 1, "userType": 0, "credentialRule": 0})
        self.pins[index] = {"pin": pin, "user": user}
        self._user_changed(6, 2 if modify else 0, user, index)
        return self._credential_answer(0x00, user)

    def _credential_answer(self, status: int, user: int | None) -> dict[str, Any]:
        free = (number for number in range(1, self._lock_attribute(18) + 1))
        next_free = next((number for number in free if number not in self.pins), None)
        return {"status": status, "userIndex": user, "nextCredentialIndex": next_free}

    def _clear_credential(self, payload: dict[str, Any], _after: list[Callable[[], None]]) -> None:
        credential = payload.get("credential")
        if credential is None:
            self.pins.clear()
            return
        index = credential.get("credentialIndex")
        removed = self.pins.pop(index, None)
        self._user_changed(6, 1, removed["user"] if removed else None, index)

    # --- schedules ----------------------------------------------------------------------

    def _set_week_day(self, payload: dict[str, Any], _after: list[Callable[[], None]]) -> None:
        key = self._schedule_key(payload, "weekDayIndex", self._lock_attribute(20))
        days = payload.get("daysMask")
        start = (payload.get("startHour"), payload.get("startMinute"))
        end = (payload.get("endHour"), payload.get("endMinute"))
        if not (isinstance(days, int) and 0 < days <= 0x7F) or not _valid_span(start, end):
            raise im_error(0x85)
        self.week_days[key] = dict(payload)

    def _clear_week_day(self, payload: dict[str, Any], _after: list[Callable[[], None]]) -> None:
        self._clear_schedule(self.week_days, payload.get("weekDayIndex"), payload.get("userIndex"))

    def _set_year_day(self, payload: dict[str, Any], _after: list[Callable[[], None]]) -> None:
        key = self._schedule_key(payload, "yearDayIndex", self._lock_attribute(21))
        start, end = payload.get("localStartTime"), payload.get("localEndTime")
        if not (isinstance(start, int) and isinstance(end, int) and start < end):
            raise im_error(0x85)
        self.year_days[key] = dict(payload)

    def _clear_year_day(self, payload: dict[str, Any], _after: list[Callable[[], None]]) -> None:
        self._clear_schedule(self.year_days, payload.get("yearDayIndex"), payload.get("userIndex"))

    def _schedule_key(
        self, payload: dict[str, Any], index_field: str, most: int
    ) -> tuple[int, int]:
        """(user, index) of a schedule to set, once the lock has checked both."""
        index, user = payload.get(index_field), payload.get("userIndex")
        if not (isinstance(index, int) and 1 <= index <= most):
            raise im_error(0x85)
        if not isinstance(user, int) or user not in self.users:
            raise im_error(0x8B)
        return user, index

    @staticmethod
    def _clear_schedule(
        schedules: dict[tuple[int, int], dict[str, Any]], index: Any, user: Any
    ) -> None:
        if index == 0xFE:
            for key in [key for key in schedules if key[0] == user]:
                del schedules[key]
        elif schedules.pop((user, index), None) is None:
            raise im_error(0x8B)


def _valid_span(start: tuple[Any, Any], end: tuple[Any, Any]) -> bool:
    def valid(hour: Any, minute: Any) -> bool:
        return (
            isinstance(hour, int)
            and isinstance(minute, int)
            and 0 <= hour < 24
            and 0 <= minute < 60
        )

    return valid(*start) and valid(*end) and start < end


@contextmanager
def running_peer(node: dict[str, Any], **options: Any) -> Iterator[MatterServerPeer]:
    """A started peer for a fixture; stops it afterwards."""
    peer = MatterServerPeer(node, **options).start()
    try:
        yield peer
    finally:
        peer.stop()
