"""A paho client driven by an asyncio event loop instead of paho's own network thread.

The service publishes one command per courier request, from the event loop. With paho's
thread, each publish woke that thread (a socket-pair write, its select returning) and
handed the GIL over and back; here a publish made on the loop goes to the socket in the
same pass of the loop. Everything paho queues in one pass (commands, the acknowledgements
of what was read, acks to hubs) is written together, corked into as few TCP segments as
fit: on loopback each segment sent costs the sender and the broker a pass through the
network stack, and under load a pass of the loop queues many packets. Reads are read
ahead the same way: paho takes each packet from the socket in three or more reads (its
type, each byte of its length, its body), each a system call, and one packet per wake-up;
here a wake-up reads what has arrived at once and hands paho every packet in it, so a
hub's event and its reply that arrive together are handled in one pass (and stored in
one transaction). Reads, keep-alive pings and reconnects run on the loop too. Two
things do not:

- A publish from another thread (the writer thread's acknowledgements) is handed to the
  loop, so only the loop ever drives the client's socket.
- Before each (re)connect, a worker thread first checks that the broker accepts a TCP
  connection at all (that connect blocks when the broker is across a network, or down),
  so a broker outage does not stall the loop's HTTP requests. paho's own connect then
  runs on the loop: the client is only ever touched from one thread.
- Over TLS, the worker thread makes the connection and its handshake (each blocks for a
  round trip or more), and paho's connect on the loop takes that socket. What the TLS
  layer has decrypted but not yet handed over does not make the socket readable: reads
  go on while it holds some.

Reconnecting waits 1 s, doubling to 5 s, as `make_client` configures paho's own loop.
The session is persistent (`prepare_session` in `doorstep.protocol.mqtt`), so QoS 1
messages published while disconnected are sent after the reconnect.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from doorstep.protocol.mqtt import BrokerAddress, prepare_session

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
READ_AHEAD_BYTES = 1 << 16
# Packets handled in one pass of the loop before it turns to its other work (HTTP
# requests, handing what was received to the writer process, writing what was published);
# the rest follow in the next pass. Small enough that the first of a burst of hub messages
# is passed on while the rest are still being read: with 256, a burst of entries moved
# through the service, its writer process and the hubs as one convoy, and the whole-path
# bench left a quarter of the cores idle.
PACKETS_PER_PASS = 16
RECONNECT_FIRST_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 5.0


class LoopDriver:
    """Runs `client`'s network I/O on the running event loop (see the module's text).
    `start` and `stop` are called on that loop; `publish` from any thread."""

    def __init__(self, client: paho.Client, address: BrokerAddress) -> None:
        self._client = client
        self._address = address
        self._tls = address.tls_context() if address.tls else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._socket: _ReadAhead | None = None  # the socket registered with the loop, if any
        self._writing = False  # waiting for a full socket to drain
        self._flush_due = False  # a write of what paho has queued is scheduled
        self._stopping = False
        self._tick: asyncio.TimerHandle | None = None
        self._reconnecting: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        """Connect (persistent session) and wait for the broker's CONNACK; raise
        ConnectionError if it refuses or does not answer within `timeout`."""
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        client = self._client
        client.on_socket_close = self._socket_closed
        client.on_disconnect = self._disconnected
        # With this callback set, paho no longer writes each packet as it is queued: it
        # says once that it has something to write, and the loop writes it all.
        client.on_socket_register_write = self._write_soon
        connack: asyncio.Future[Any] = loop.create_future()

        def on_connack(reason: Any) -> None:
            if not connack.done():
                connack.set_result(reason)

        prepare_session(client, self._address, on_connack)
        where = f"{self._address.host}:{self._address.port}"
        try:
            await self._connect()
            reason = await asyncio.wait_for(asyncio.shield(connack), timeout)
        except (OSError, TimeoutError) as exc:
            self.stop()
            problem = str(exc) or "no answer from the broker"
            raise ConnectionError(f"MQTT connect to {where} failed: {problem}") from exc
        if reason.is_failure:
            self.stop()
            raise ConnectionError(f"MQTT connect to {where} failed: {reason}")
        self._tick = loop.call_later(TICK_SECONDS, self._on_tick)

    def stop(self) -> None:
        """Disconnect and release the socket (on the loop)."""
        self._stopping = True
        if self._tick is not None:
            self._tick.cancel()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        self._client.disconnect()
        self._flush()  # the DISCONNECT, written now; paho closes the socket after it
        self._client.reinitialise()  # whatever is left open, closed

    # --- publishing ----------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish from any thread: at once on the loop, otherwise handed to it. QoS 1
        messages published while disconnected are sent once the session resumes."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the MQTT driver is not started")
        if threading.get_ident() != self._loop_thread:
            send = functools.partial(
                self.publish, topic, payload, qos=qos, retain=retain, properties=properties
            )
            try:
                loop.call_soon_threadsafe(send)
            except RuntimeError:  # the loop has closed: the service is stopping
                log.debug("dropped a publish to %s: the event loop has closed", topic)
            return
        self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    # --- the socket on the loop --------------------------------------------------------

    def _register(self) -> None:
        assert self._loop is not None
        sock = self._client.socket()
        if sock is None or sock is self._socket:
            return
        wrapped = _TlsReadAhead(sock) if isinstance(sock, ssl.SSLSocket) else _ReadAhead(sock)
        # paho reads and writes through its `_sock` only (paho-mqtt 2.2, pinned): give it
        # the reading-ahead one, so that closing it and its callbacks name that one too.
        self._client._sock = wrapped
        self._socket = wrapped
        self._writing = False
        self._loop.add_reader(wrapped, self._on_readable)
        self._flush()

    def _on_readable(self) -> None:
        # Every packet that has arrived; the socket is read again only when what was read
        # ahead is used up. A lost connection ends in `_disconnected`.
        for _ in range(PACKETS_PER_PASS):
            self._client.loop_read()
            sock = self._socket
            if sock is None or not sock.buffered:
                return
        assert self._loop is not None
        # The socket may not be readable again for what is still read ahead: go on in the
        # next pass.
        self._loop.call_soon(self._on_readable)

    def _write_soon(self, _client: paho.Client, _userdata: Any, _sock: Any) -> None:
        # paho's word that it has queued something: write it later in this pass of the
        # loop, with whatever else is queued by then. A full socket is drained by
        # `_on_writable` instead.
        if self._flush_due or self._writing or self._loop is None:
            return
        self._flush_due = True
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what paho has queued; if the socket is full, finish when it drains."""
        self._flush_due = False
        client = self._client
        if not client.want_write() or self._socket is None or self._writing:
            return
        self._write()
        if client.want_write() and self._socket is not None and not self._writing:
            assert self._loop is not None
            self._writing = True
            self._loop.add_writer(self._socket, self._on_writable)

    def _on_writable(self) -> None:
        self._write()
        if not self._client.want_write() and self._socket is not None:
            assert self._loop is not None
            self._loop.remove_writer(self._socket)
            self._writing = False

    def _write(self) -> None:
        # paho sends each queued packet with a send() of its own; corked, the kernel
        # holds them and sends them as one segment (or as few as fit) when uncorked.
        sock = self._socket
        corked = _cork(sock, True)
        try:
            self._client.loop_write()
        finally:
            if corked and sock is not None:
                _cork(sock, False)

    def _socket_closed(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        # paho calls this on the loop, just before it closes `sock`.
        if self._socket is None or sock is not self._socket or self._loop is None:
            return
        self._socket = None
        self._loop.remove_reader(sock)
        if self._writing:
            self._loop.remove_writer(sock)
            self._writing = False

    def _on_tick(self) -> None:
        assert self._loop is not None
        self._client.loop_misc()  # keep-alive ping, or a lost connection noticed
        self._flush()
        if self._socket is None:
            # Whatever way the connection went (even one paho closed without telling,
            # or a reconnect whose socket died as it was made), keep trying.
            self._disconnected()
        if not self._stopping:
            self._tick = self._loop.call_later(TICK_SECONDS, self._on_tick)

    # --- reconnecting --------------------------------------------------------------------

    def _disconnected(self, *_args: Any) -> None:
        loop = self._loop
        if self._stopping or loop is None:
            return
        if self._reconnecting is None or self._reconnecting.done():
            log.warning("lost the broker connection; reconnecting")
            self._reconnecting = loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        assert self._loop is not None
        delay = RECONNECT_FIRST_SECONDS
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except OSError as exc:
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                log.warning("broker unreachable (%s); next try in %.0f s", exc, delay)
                continue
            except Exception:  # the process edge: never stop trying to reach the broker
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                log.exception("reconnecting to the broker failed; next try in %.0f s", delay)
                continue
            if self._socket is not None:
                return

    async def _connect(self) -> None:
        """Open the connection and send CONNECT; the CONNACK arrives on the loop."""
        assert self._loop is not None
        address = (self._address.host, self._address.port)
        timeout = self._client.connect_timeout
        if self._tls is None:
            await self._loop.run_in_executor(None, _probe, address, timeout)
            self._client.reconnect()  # quick: the broker has just accepted a connection
        else:
            sock = await self._loop.run_in_executor(None, _handshake, address, self._tls, timeout)
            _reconnect_over(self._client, sock)
        self._register()


class _ReadAhead:
    """A client socket read `READ_AHEAD_BYTES` at a time; paho's small reads are served
    from what was read. Everything else is the socket's own."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data = b""
        self._start = 0

    @property
    def buffered(self) -> int:
        return len(self._data) - self._start

    def fileno(self) -> int:
        fileno: int = self._sock.fileno()
        return fileno

    def recv(self, size: int) -> bytes:
        if self._start >= len(self._data):
            data: bytes = self._sock.recv(READ_AHEAD_BYTES)  # BlockingIOError as paho expects
            if not data:
                return data  # the connection has ended
            self._data, self._start = data, 0
        start = self._start
        self._start = min(start + size, len(self._data))
        return self._data[start : self._start]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _TlsReadAhead(_ReadAhead):
    """A TLS socket read ahead: what the TLS layer holds decrypted counts as buffered,
    as the socket will not turn readable for it."""

    @property
    def buffered(self) -> int:
        pending: int = self._sock.pending()
        return len(self._data) - self._start + pending


def _cork(sock: Any, on: bool) -> bool:
    """Set TCP_CORK (Linux) on `sock`; False where it cannot be (another system, a
    socket that is not TCP, one already closed)."""
    option = getattr(socket, "TCP_CORK", None)
    if option is None or sock is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, int(on))
    except OSError:
        return False
    return True


def _probe(address: tuple[str, int], timeout: float) -> None:
    """Raise OSError unless the broker accepts a TCP connection (in a worker thread)."""
    socket.create_connection(address, timeout=timeout).close()


def _handshake(address: tuple[str, int], context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    """Connect to the broker and complete the TLS handshake (in a worker thread); raise
    OSError (ssl.SSLError: a certificate refused, logged by the context's sockets)."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        return context.wrap_socket(sock, server_hostname=address[0])
    except BaseException:
        sock.close()
        raise


def _reconnect_over(client: paho.Client, sock: ssl.SSLSocket) -> None:
    """paho's reconnect (a new session state, CONNECT queued) over `sock`, already
    connected: paho 2.2 (pinned) opens each connection with its `_create_socket`."""
    client._create_socket = lambda: sock  # type: ignore[method-assign]
    try:
        client.reconnect()
    except BaseException:
        sock.close()
        raise
    finally:
        del client._create_socket
