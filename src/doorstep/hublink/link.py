"""The service's MQTT connection to every hub.

One paho client (its own network thread) publishes commands and receives replies, events
and status. Received messages go onto a queue; one ingest thread drains it in batches,
applies each batch in a single transaction, commits, and only then publishes the
cumulative acks and wakes the HTTP requests waiting for a reply. Batching keeps commits
(and SQLite's fsyncs) off the per-message path.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import paho.mqtt.client as paho
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from doorstep.access import service as access
from doorstep.clock import Clock
from doorstep.homes.models import Hub
from doorstep.hublink import service as ingest
from doorstep.protocol import PROTOCOL_VERSION, topics
from doorstep.protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    Command,
    CommandKind,
    Event,
    Reply,
    Status,
)
from doorstep.protocol.mqtt import BrokerAddress, close, connect, expiring, make_client

log = logging.getLogger(__name__)

BATCH_LIMIT = 500
SWEEP_SECONDS = 5.0
REPLAY_REQUEST_SECONDS = 2.0


@dataclass
class Waiter:
    event: threading.Event = field(default_factory=threading.Event)
    reply: Reply | None = None

    def wait(self, timeout: float) -> Reply | None:
        self.event.wait(timeout)
        return self.reply


@dataclass
class _Batch:
    acks: dict[tuple[str, int], int] = field(default_factory=dict)
    replays: dict[str, tuple[int, int]] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)


class HubLink:
    def __init__(
        self,
        *,
        address: BrokerAddress,
        session_factory: sessionmaker[Session],
        clock: Clock,
        command_expiry_seconds: int,
        client_id: str = "doorstep-service",
    ) -> None:
        self._address = address
        self._sessions = session_factory
        self._clock = clock
        self._expiry = command_expiry_seconds
        self._client = make_client(client_id, address)
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._waiters: dict[str, Waiter] = {}
        self._waiters_lock = threading.Lock()
        self._last_replay: dict[str, float] = {}
        self._worker = threading.Thread(target=self._run, name="hub-ingest", daemon=True)
        self._stopping = threading.Event()
        self._changed = threading.Condition()

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()
        connect(self._client, self._address)

    def stop(self) -> None:
        self._stopping.set()
        self._inbox.put(None)
        close(self._client)
        self._worker.join(timeout=10)

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        for topic in (topics.ALL_EVENTS, topics.ALL_REPLIES, topics.ALL_STATUS):
            client.subscribe(topic, qos=1)

    # --- commands out ------------------------------------------------------------------

    def expect_reply(self, command_id: str) -> Waiter:
        waiter = Waiter()
        with self._waiters_lock:
            self._waiters[command_id] = waiter
        return waiter

    def forget(self, command_id: str) -> None:
        with self._waiters_lock:
            self._waiters.pop(command_id, None)

    def publish_command(self, hub_id: str, command: Command) -> None:
        # Message expiry keeps a stale command from reaching a hub that reconnects late;
        # the signed `not_after` and grant `exp` are what the hub actually enforces.
        self._client.publish(
            topics.Topics(hub_id).cmd,
            command.model_dump_json(exclude_none=True).encode(),
            qos=1,
            properties=expiring(self._expiry),
        )

    def _request_replay(self, hub_id: str, epoch: int, from_seq: int) -> None:
        now = self._clock.timestamp()
        if now - self._last_replay.get(hub_id, 0.0) < REPLAY_REQUEST_SECONDS:
            return
        self._last_replay[hub_id] = now
        command = Command(
            v=PROTOCOL_VERSION,
            command_id=f"replay-{hub_id}-{int(now * 1000)}",
            kind=CommandKind.REPLAY,
            not_after=int(now) + self._expiry,
            from_epoch=epoch,
            from_seq=from_seq,
        )
        self.publish_command(hub_id, command)

    # --- messages in -------------------------------------------------------------------

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        self._inbox.put((message.topic, bytes(message.payload)))

    def _run(self) -> None:
        last_sweep = 0.0
        while not self._stopping.is_set():
            batch = self._drain()
            if batch is None:
                return
            try:
                if batch:
                    self._apply(batch)
                now = self._clock.timestamp()
                if now - last_sweep >= SWEEP_SECONDS:
                    last_sweep = now
                    self._sweep()
            except Exception:  # the process edge: log, keep ingesting
                log.exception("ingest batch failed; messages will be resent by the hubs")

    def _drain(self) -> list[tuple[str, bytes]] | None:
        try:
            first = self._inbox.get(timeout=1.0)
        except queue.Empty:
            return []
        if first is None:
            return None
        items = [first]
        while len(items) < BATCH_LIMIT:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._inbox.put(None)
                break
            items.append(item)
        return items

    def _apply(self, items: list[tuple[str, bytes]]) -> None:
        outcome = _Batch()
        now = self._clock.now()
        with self._sessions() as session:
            for topic, payload in items:
                self._apply_one(session, topic, payload, now, outcome)
            session.commit()
        with self._changed:
            self._changed.notify_all()
        for (hub_id, epoch), through in outcome.acks.items():
            ack = Ack(epoch=epoch, through_seq=through).model_dump_json().encode()
            self._client.publish(topics.Topics(hub_id).ack, ack, qos=1, retain=True)
        for hub_id, (epoch, from_seq) in outcome.replays.items():
            self._request_replay(hub_id, epoch, from_seq)
        for reply in outcome.replies:
            self._wake(reply)

    def _apply_one(
        self, session: Session, topic: str, payload: bytes, now: datetime, outcome: _Batch
    ) -> None:
        parsed = topics.parse(topic)
        if parsed is None or len(payload) > MAX_MESSAGE_BYTES:
            return
        hub_id, leaf = parsed
        hub = session.get(Hub, hub_id)
        if hub is None:
            return
        try:
            with session.begin_nested():
                self._dispatch(session, hub, leaf, payload, now, outcome)
        except (ValidationError, orjson.JSONDecodeError, ingest.RejectedEvent) as exc:
            log.warning("dropped a message from %s on %s: %s", hub_id, leaf, exc)

    def _dispatch(
        self,
        session: Session,
        hub: Hub,
        leaf: str,
        payload: bytes,
        now: datetime,
        outcome: _Batch,
    ) -> None:
        if leaf == "events":
            event = Event.model_validate_json(payload)
            if event.hub != hub.id:
                raise ingest.RejectedEvent("event names another hub")
            result = ingest.ingest_event(session, hub=hub, event=event, now=now)
            outcome.acks[(hub.id, event.epoch)] = result.through_seq
            if result.gap_from is not None:
                outcome.replays[hub.id] = (event.epoch, result.gap_from)
        elif leaf == "reply":
            reply = Reply.model_validate_json(payload)
            ingest.ingest_reply(session, hub_id=hub.id, reply=reply, now=now)
            outcome.replies.append(reply)
        elif leaf == "status":
            ingest.ingest_status(
                session, hub=hub, status=Status.model_validate_json(payload), now=now
            )

    def wait_for_change(self, timeout: float) -> None:
        """Block until an ingest batch has committed (or `timeout` passes)."""
        with self._changed:
            self._changed.wait(timeout)

    def _wake(self, reply: Reply) -> None:
        with self._waiters_lock:
            waiter = self._waiters.pop(reply.command_id, None)
        if waiter is not None:
            waiter.reply = reply
            waiter.event.set()

    def _sweep(self) -> None:
        with self._sessions() as session:
            access.expire_stale(session, now=self._clock.now())
            session.commit()


PublishFn = Callable[[str, Command], None]
