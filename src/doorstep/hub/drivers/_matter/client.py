"""A thread-based client for the python-matter-server WebSocket API.

Wire format (python-matter-server `docs/websockets_api.md`, `matter_server/common/models.py`;
the matter.js "OHF Matter Server" keeps the same interface):
- on connect the server sends its ServerInfoMessage, `{"fabric_id", "compressed_fabric_id",
  "schema_version", "min_supported_schema_version", "sdk_version", ...}`;
- a command is `{"message_id": "<str>", "command": "<name>", "args": {...}}`;
- its answer is `{"message_id", "result"}` or `{"message_id", "error_code", "details"}`;
- after `start_listening`, whose result is the dump of every node, the server streams
  events `{"event": "<name>", "data": ...}` (`attribute_updated`, `node_event`,
  `node_updated`, `node_removed`, `server_shutdown`, ...).
Error codes (`matter_server/common/errors.py`): 0 unknown, 3 NodeNotReady, 5 NodeNotExists,
7 SDKStackError, 8 InvalidArguments, 9 InvalidCommand, ... A status refused by the device
itself arrives inside `details`, as the SDK prints it:
`"InteractionModelError: NeedsTimedInteraction (0xc6)"`; `CommandFailed.status` holds it.

One session thread connects, reads the server info, sends `start_listening`, then reads
until the connection drops, and reconnects after a capped exponential backoff until
`close()`. The listener's callbacks run on that thread and must not block. `submit()`
never blocks on an answer; `call()` waits for one, with a timeout. Every command still
waiting when the connection drops fails with `NotConnected`.

`details` may echo a command's arguments, so it never goes into an exception message or
a log line; nor does any frame (websockets' own frame logging is switched off here).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # a start_listening dump of a large fabric is big
_STATUS_IN_DETAILS = re.compile(r"\(0x([0-9a-fA-F]+)")


class MatterServerError(Exception):
    """A command could not get an answer from the Matter server."""


class NotConnected(MatterServerError):
    """No connection to the server, or it dropped before the answer came."""


class CommandTimeout(MatterServerError):
    """The server did not answer in time."""


class CommandFailed(MatterServerError):
    """The server answered with an error (`error_code`; the device's `status`, if any)."""

    def __init__(self, command: str, error_code: int, details: str | None) -> None:
        self.command = command
        self.error_code = error_code
        self.details = details
        match = _STATUS_IN_DETAILS.search(details or "")
        self.status = int(match.group(1), 16) if match else None
        status = f", device status 0x{self.status:02x}" if self.status is not None else ""
        super().__init__(f"{command} failed: error_code {error_code}{status}")


@dataclass(frozen=True)
class ServerInfo:
    schema_version: int
    sdk_version: str


class Listener(Protocol):
    def on_connected(self, info: ServerInfo, nodes: list[dict[str, Any]]) -> None:
        """The connection is up and `nodes` is the server's fresh dump of every node."""
        ...

    def on_event(self, event: str, data: Any) -> None:
        """One event message from the server."""
        ...

    def on_disconnected(self) -> None:
        """The connection dropped (or could not be set up); reconnection follows."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: `initial`, doubling, capped at `maximum` seconds."""

    initial: float = 0.5
    maximum: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


class _QuietFrames(logging.LoggerAdapter[logging.Logger]):
    """websockets logs every frame at DEBUG; frames carry PIN codes, so never log them."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


class MatterServerConnection:
    """One WebSocket session with a Matter server, kept up until `close()`."""

    def __init__(
        self,
        url: str,
        listener: Listener,
        *,
        open_timeout: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._url = url
        self._listener = listener
        self._open_timeout = open_timeout
        self._backoff = backoff if backoff is not None else Backoff()
        self._mutex = threading.Lock()
        self._send_lock = threading.Lock()
        self._ws: ClientConnection | None = None
        self._connected = False
        self._pending: dict[str, tuple[str, Future[Any]]] = {}
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="matter-ws", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop reconnecting, close the connection, and wait for the session thread."""
        self._stop.set()
        with self._mutex:
            ws = self._ws
        if ws is not None:
            ws.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self._open_timeout + 5)

    @property
    def connected(self) -> bool:
        with self._mutex:
            return self._connected

    # --- commands ------------------------------------------------------------------------

    def submit(self, command: str, args: dict[str, Any] | None = None) -> Future[Any]:
        """Send a command; the future gets its result or a MatterServerError.

        Raises NotConnected when the command cannot be sent at all.
        """
        future: Future[Any] = Future()
        with self._mutex:
            ws = self._ws if self._connected else None
            if ws is None:
                raise NotConnected("not connected to the Matter server")
            message_id = str(next(self._ids))
            self._pending[message_id] = (command, future)
        try:
            self._send(ws, {"message_id": message_id, "command": command, "args": args or {}})
        except (ConnectionClosed, OSError) as exc:
            self._forget(message_id)
            raise NotConnected(f"{command} could not be sent") from exc
        return future

    def call(self, command: str, args: dict[str, Any] | None = None, *, timeout: float) -> Any:
        """Send a command and wait up to `timeout` seconds for its result."""
        future = self.submit(command, args)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            self._discard(future)
            raise CommandTimeout(f"{command}: no answer within {timeout} s") from exc

    def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        with self._send_lock:
            ws.send(json.dumps(message))

    def _forget(self, message_id: str) -> tuple[str, Future[Any]] | None:
        with self._mutex:
            return self._pending.pop(message_id, None)

    def _discard(self, future: Future[Any]) -> None:
        with self._mutex:
            for message_id, (_, waiting) in list(self._pending.items()):
                if waiting is future:
                    del self._pending[message_id]

    # --- the session thread ------------------------------------------------------------

    def _run(self) -> None:
        delays = self._backoff.delays()
        while not self._stop.is_set():
            if self._session():
                delays = self._backoff.delays()  # it worked: start the backoff afresh
            if self._stop.wait(next(delays)):
                break

    def _session(self) -> bool:
        """One connection, from opening to its end; True if the handshake worked."""
        try:
            with connect(
                self._url,
                open_timeout=self._open_timeout,
                close_timeout=2,
                max_size=MAX_MESSAGE_BYTES,
                proxy=None,  # the Matter server is on the home network
                logger=_QuietFrames(log, {}),
            ) as ws:
                return self._serve(ws)
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.warning("cannot connect to the Matter server: %s", _describe(exc))
            return False

    def _serve(self, ws: ClientConnection) -> bool:
        """Handshake, then read until the connection drops; True if the handshake worked."""
        with self._mutex:
            if self._stop.is_set():
                ws.close()
                return False
            self._ws = ws
        try:
            info, nodes = self._handshake(ws)
        except (ConnectionClosed, TimeoutError, OSError, ValueError) as exc:
            log.warning("Matter server handshake failed: %s", _describe(exc))
            self._drop(ws)
            return False
        with self._mutex:
            self._connected = True
        log.info(
            "connected to the Matter server (schema %d, SDK %s)",
            info.schema_version,
            info.sdk_version,
        )
        self._notify(self._listener.on_connected, info, nodes)
        try:
            while True:
                self._dispatch(ws.recv())
        except ConnectionClosed:
            pass
        self._drop(ws)
        return True

    def _handshake(self, ws: ClientConnection) -> tuple[ServerInfo, list[dict[str, Any]]]:
        raw_info = _parse(ws.recv(timeout=self._open_timeout))
        if raw_info is None or not isinstance(raw_info.get("schema_version"), int):
            raise ValueError("the first message is not a server info message")
        info = ServerInfo(raw_info["schema_version"], str(raw_info.get("sdk_version", "")))
        message_id = f"listen-{next(self._ids)}"
        self._send(ws, {"message_id": message_id, "command": "start_listening", "args": {}})
        while True:
            message = _parse(ws.recv(timeout=self._open_timeout))
            if message is None or message.get("message_id") != message_id:
                continue
            if "error_code" in message:
                raise ValueError(f"start_listening failed: error_code {message['error_code']}")
            nodes = message.get("result")
            if not isinstance(nodes, list):
                raise ValueError("start_listening did not answer with a list of nodes")
            return info, [node for node in nodes if isinstance(node, dict)]

    def _drop(self, ws: ClientConnection) -> None:
        ws.close()
        with self._mutex:
            was_connected = self._connected
            self._ws = None
            self._connected = False
            pending = list(self._pending.values())
            self._pending.clear()
        for command, future in pending:
            future.set_exception(NotConnected(f"connection lost before {command} was answered"))
        if was_connected:
            log.warning("lost the connection to the Matter server")
        self._notify(self._listener.on_disconnected)

    def _dispatch(self, raw: str | bytes) -> None:
        message = _parse(raw)
        if message is None:
            log.warning("ignored a message from the Matter server that is not a JSON object")
        elif "event" in message:
            self._notify(self._listener.on_event, str(message["event"]), message.get("data"))
        elif "message_id" in message:
            self._answer(message)

    def _answer(self, message: dict[str, Any]) -> None:
        waiting = self._forget(str(message["message_id"]))
        if waiting is None:
            return  # timed out already, or not ours
        command, future = waiting
        if "error_code" in message:
            error_code = message["error_code"]
            details = message.get("details")
            future.set_exception(
                CommandFailed(
                    command,
                    error_code if isinstance(error_code, int) else 0,
                    details if isinstance(details, str) else None,
                )
            )
        else:
            future.set_result(message.get("result"))

    @staticmethod
    def _notify(callback: Any, *args: Any) -> None:
        # The session thread is a process edge: a listener bug must not end the session.
        try:
            callback(*args)
        except Exception:
            log.exception("Matter server listener failed")


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
