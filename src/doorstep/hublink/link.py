"""The service's MQTT connection to every hub.

One paho client, driven by the app's event loop (`doorstep.protocol.mqtt_asyncio`),
publishes commands and receives replies, events and status. Each received message becomes
a job on the writer thread (`doorstep.sql`), which stores it in a batched transaction; only
after that commit are the cumulative acks published, waiting requests woken and replays
requested.

Each hub has a message budget (`MessageBudget`): a hub's broker password sits on a device
in someone's home, and whoever extracts it could otherwise have the service parse, verify
and store messages as fast as the network carries them, slowing every other home's
entries. What a hub sends over its budget is dropped before any work is spent on it; an
event dropped is not acknowledged, so the hub sends it again (every 3 s, and when the
service asks for a replay) and a hub's backlog is stored at the budget's rate. The one
exception is a reply to a command a request is waiting for, sent to that hub: the hub
sends it once and never again, so dropping it would leave the request to time out although
the hub answered. Each such command lets one reply through (`HubLink._awaited`); a flood
of replies naming other commands, or another hub's, is dropped as ever. The budget's
limits are settings (`HubLinkSettings`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import paho.mqtt.client as paho
from pydantic import ValidationError

from doorstep.access import service as access
from doorstep.clock import Clock
from doorstep.errors import ServiceUnavailable
from doorstep.grants import shadow
from doorstep.hublink import service as ingest
from doorstep.protocol import PROTOCOL_VERSION, topics
from doorstep.protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    CameraBeat,
    Command,
    CommandKind,
    Event,
    Reply,
    Status,
)
from doorstep.protocol.mqtt import BrokerAddress, expiring, make_client
from doorstep.protocol.mqtt_asyncio import LoopDriver
from doorstep.settings import HubLinkSettings
from doorstep.sql import Tx, Writer

if TYPE_CHECKING:
    from doorstep.hotwriter import HotWriter

log = logging.getLogger(__name__)

SWEEP_SECONDS = 5.0
BEAT_CHECK_SECONDS = 0.5
# No camera heartbeat for an entry this long (they come about every second): camera lost.
CAMERA_SILENCE_SECONDS = 3.0
REPLAY_REQUEST_SECONDS = 2.0
# A hub over its budget is logged at most this often.
BUDGET_WARNING_SECONDS = 60.0


@dataclass
class _Outcome:
    ack: tuple[str, int, int] | None = None  # hub, epoch, through_seq
    replay: tuple[str, int, int] | None = None  # hub, epoch, from_seq
    reply: tuple[str, Reply] | None = None  # hub, reply
    loaded: access.EntryView | None = None  # the reply's entry, read in its transaction
    changed: bool = False
    stale_shadow: str | None = None  # a hub that came online behind its shadow version


@dataclass(frozen=True, slots=True)
class Answer:
    reply: Reply
    # The reply's entry as its own transaction left it (None if the reply has no entry):
    # the request that waits has it the moment the reply is committed, without a writer
    # job of its own.
    loaded: access.EntryView | None


@dataclass
class Waiter:
    future: concurrent.futures.Future[Answer] = field(default_factory=concurrent.futures.Future)
    # The hub the command was sent to (`HubLink.publish_command`): only its reply wakes
    # the waiter.
    hub_id: str | None = None


class Ingestor:
    """Store one message from a hub (a writer job) and say what must follow its commit.
    Keeps each hub's identity and key once read; used by one thread at a time."""

    def __init__(self) -> None:
        self._hubs: dict[str, ingest.HubInfo] = {}

    def store(self, tx: Tx, hub_id: str, leaf: str, payload: bytes, now: datetime) -> _Outcome:
        hub = self._hubs.get(hub_id) or ingest.hub_info(tx, hub_id)
        if hub is None:
            return _Outcome()
        self._hubs[hub_id] = hub
        try:
            return self._dispatch(tx, hub, leaf, payload, now)
        except (ValidationError, orjson.JSONDecodeError, ingest.RejectedEvent) as exc:
            log.warning("dropped a message from %s on %s: %s", hub_id, leaf, exc)
            return _Outcome()

    def _dispatch(
        self, tx: Tx, hub: ingest.HubInfo, leaf: str, payload: bytes, now: datetime
    ) -> _Outcome:
        if leaf == "events":
            event = Event.model_validate_json(payload)
            if event.hub != hub.id:
                raise ingest.RejectedEvent("event names another hub")
            result = ingest.ingest_event(tx, hub=hub, event=event, now=now)
            replay = (hub.id, event.epoch, result.gap_from) if result.gap_from else None
            ack = (hub.id, event.epoch, result.through_seq)
            return _Outcome(ack=ack, replay=replay, changed=result.stored)
        if leaf == "reply":
            reply = Reply.model_validate_json(payload)
            entry_id = ingest.ingest_reply(tx, hub_id=hub.id, reply=reply, now=now)
            loaded = _load_entry(tx, entry_id) if entry_id is not None else None
            return _Outcome(reply=(hub.id, reply), loaded=loaded, changed=True)
        if leaf == "status":
            status = Status.model_validate_json(payload)
            ingest.ingest_status(tx, hub=hub, status=status, now=now)
            stale = status.state == "online" and shadow.needs_publish(tx, hub.id)
            return _Outcome(changed=True, stale_shadow=hub.id if stale else None)
        if leaf == "reported":
            return _Outcome(changed=shadow.apply_reported(tx, hub_id=hub.id, payload=payload,
                                                          now=now))  # fmt: skip
        return _Outcome()


def _load_entry(tx: Tx, entry_id: str) -> access.EntryView | None:
    # In a savepoint of its own: a failed statement must not take the reply's transaction
    # down with it (PostgreSQL refuses everything after one until rollback).
    tx.savepoint("reply_entry")
    try:
        loaded = access.load_entry(tx, entry_id)
    except Exception:  # the reply is stored either way; a waiter reads the entry itself
        log.exception("reading entry %s for its reply failed", entry_id)
        tx.rollback_to("reply_entry")
        return None
    tx.release("reply_entry")
    return loaded


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # when `tokens` was counted (monotonic seconds)
    warned_at: float = float("-inf")


class MessageBudget:
    """A token bucket per hub: `per_second` messages sustained, `burst` at once. Used by
    one thread (the link's event loop); times are monotonic seconds, passed in.

    A bucket idle long enough to be full again, and past its warning interval, is the
    same as none: those are forgotten when a new hub's bucket is made, so only the hubs
    heard from in the last few minutes are held."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self._burst = float(burst)
        self._idle_after = max(burst / per_second, BUDGET_WARNING_SECONDS)
        self._buckets: dict[str, _Bucket] = {}
        self._swept_at = float("-inf")

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, hub_id: str, now: float) -> bool:
        """Spend one of `hub_id`'s messages; False if it has none left."""
        bucket = self._buckets.get(hub_id)
        if bucket is None:
            bucket = self._buckets[hub_id] = self._new(now)
        tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self.per_second)
        bucket.at = now
        if tokens < 1.0:
            bucket.tokens = tokens
            return False
        bucket.tokens = tokens - 1.0
        return True

    def warn_due(self, hub_id: str, now: float) -> bool:
        """Whether to log that `hub_id` is over its budget (at most once an interval)."""
        bucket = self._buckets[hub_id]
        if now - bucket.warned_at < BUDGET_WARNING_SECONDS:
            return False
        bucket.warned_at = now
        return True

    def _new(self, now: float) -> _Bucket:
        if now - self._swept_at >= self._idle_after:
            self._swept_at = now
            idle = [hub for hub, b in self._buckets.items() if now - b.at >= self._idle_after]
            for hub in idle:
                del self._buckets[hub]
        return _Bucket(self._burst, now)


class HubLink:
    def __init__(
        self,
        *,
        address: BrokerAddress,
        writer: Writer,
        clock: Clock,
        command_expiry_seconds: int,
        budget: HubLinkSettings,
        client_id: str = "doorstep-service",
        on_message: Callable[[str, str | None], None] = lambda _kind, _dropped: None,
    ) -> None:
        self._address = address
        # Told each received message's kind, and why it was dropped unread, if it was
        # (`doorstep.metrics`).
        self._count = on_message
        self._budget = MessageBudget(budget.messages_per_second, budget.message_burst)
        self._beat_budget = MessageBudget(budget.camera_beats_per_second, budget.camera_beat_burst)
        self._writer = writer
        self._clock = clock
        self._expiry = command_expiry_seconds
        # Built once: paho packs properties at each publish and never changes them.
        self._command_properties = expiring(command_expiry_seconds)
        self._client = make_client(client_id, address)
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._mqtt = LoopDriver(self._client, address)
        self._waiters: dict[str, Waiter] = {}
        # Hub -> the commands sent to it that a request waits for and whose reply has not
        # yet been let past the hub's budget (at most one each). Under `_waiters_lock`.
        self._awaited: dict[str, set[str]] = {}
        self._waiters_lock = threading.Lock()
        self._ingestor = Ingestor()  # used on the writer thread only
        # Set by the app: the hot paths' writer process (`doorstep.hotwriter`), which
        # stores what hubs send while it runs; else this process's writer thread does.
        self.hot: HotWriter | None = None
        self._last_replay: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._beats: dict[tuple[str, str], float] = {}  # (hub, entry) -> last heartbeat
        # Set by the app: publish a hub's desired document again (`grants.shadow`).
        self.on_stale_shadow: Callable[[str], None] | None = None
        self._beats_lock = threading.Lock()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="sweep", daemon=True)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect on the running event loop (ConnectionError if the broker refuses)."""
        await self._mqtt.start()
        self._sweeper.start()

    def stop(self) -> None:
        """Disconnect (on the loop that started the link)."""
        self._stopping.set()
        self._mqtt.stop()
        self._sweeper.join(timeout=10)

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, _r: object, _p: object
    ) -> None:
        for topic in (
            topics.ALL_EVENTS,
            topics.ALL_REPLIES,
            topics.ALL_STATUS,
            topics.ALL_REPORTED,
        ):
            client.subscribe(topic, qos=1)
        client.subscribe(topics.ALL_CAMERA, qos=0)

    # --- commands out ------------------------------------------------------------------

    def expect_reply(self, command_id: str) -> Waiter:
        """A future for the reply to `command_id` from the hub it is then published to
        (`publish_command`), with the reply's entry as the reply's transaction left it
        (`Answer.loaded`)."""
        waiter = Waiter()
        with self._waiters_lock:
            self._waiters[command_id] = waiter
        return waiter

    def forget(self, command_id: str) -> None:
        with self._waiters_lock:
            self._drop_waiter(command_id)

    def _drop_waiter(self, command_id: str) -> Waiter | None:
        """Remove `command_id`'s waiter, if any; with `_waiters_lock` held."""
        waiter = self._waiters.pop(command_id, None)
        if waiter is not None and waiter.hub_id is not None:
            self._unawait(waiter.hub_id, command_id)
        return waiter

    def _unawait(self, hub_id: str, command_id: str) -> bool:
        """Whether `command_id` was awaited from `hub_id`; it is no longer. With
        `_waiters_lock` held."""
        awaited = self._awaited.get(hub_id)
        if awaited is None or command_id not in awaited:
            return False
        awaited.discard(command_id)
        if not awaited:
            del self._awaited[hub_id]
        return True

    def publish_command(self, hub_id: str, command: Command) -> None:
        with self._waiters_lock:  # a waiter's command is the hub's it is first sent to
            waiter = self._waiters.get(command.command_id)
            if waiter is not None and waiter.hub_id is None:
                waiter.hub_id = hub_id
                self._awaited.setdefault(hub_id, set()).add(command.command_id)
        # Message expiry keeps a stale command from reaching a hub that reconnects late;
        # the signed `not_after` and grant `exp` are what the hub actually enforces.
        self._mqtt.publish(
            topics.Topics(hub_id).cmd,
            command.model_dump_json(exclude_none=True).encode(),
            qos=1,
            properties=self._command_properties,
        )

    def publish_desired(self, hub_id: str, payload: bytes) -> None:
        """A hub's signed desired document, retained: a hub that is offline now gets the
        newest one when it connects."""
        self._mqtt.publish(topics.Topics(hub_id).desired, payload, qos=1, retain=True)

    def _request_replay(self, hub_id: str, epoch: int, from_seq: int) -> None:
        now = self._clock.timestamp()
        if now - self._last_replay.get(hub_id, 0.0) < REPLAY_REQUEST_SECONDS:
            return
        self._last_replay[hub_id] = now
        self.publish_command(
            hub_id,
            Command(
                v=PROTOCOL_VERSION,
                command_id=f"replay-{hub_id}-{int(now * 1000)}",
                kind=CommandKind.REPLAY,
                not_after=int(now) + self._expiry,
                from_epoch=epoch,
                from_seq=from_seq,
            ),
        )

    # --- messages in -------------------------------------------------------------------

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        parsed = topics.parse(message.topic)
        if parsed is None or len(message.payload) > MAX_MESSAGE_BYTES:
            return
        hub_id, leaf = parsed
        budget = self._beat_budget if leaf == "camera" else self._budget
        if not budget.take(hub_id, time.monotonic()) and not (
            leaf == "reply" and self._awaited_reply(hub_id, message.payload)
        ):
            self._over_budget(budget, hub_id, leaf)
            return
        self._count(leaf, None)
        payload = bytes(message.payload)
        if leaf == "camera":  # heartbeats: kept in memory, their silence is what counts
            self._note_beat(hub_id, payload)
            return
        now = self._clock.now()
        hot = self.hot
        if hot is not None and hot.ready:
            hot.ingest(hub_id, leaf, payload, now).add_done_callback(
                lambda done: self._ingested(done, hub_id, leaf, payload, now)
            )
            return
        self._writer.submit(
            lambda tx: self._ingestor.store(tx, hub_id, leaf, payload, now),
            then=self._after_commit,
        )

    def _awaited_reply(self, hub_id: str, payload: bytes | bytearray) -> bool:
        """Whether `payload`, a reply from `hub_id` over its budget, answers a command
        sent to that hub that a request waits for, and is the first such reply to it: let
        through, as the hub sends it once. Read only when the hub has such a command: a
        flood is parsed at most while its own hub is awaited, and nothing is kept for it."""
        with self._waiters_lock:
            if hub_id not in self._awaited:
                return False
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        command_id = body.get("command_id") if isinstance(body, dict) else None
        if not isinstance(command_id, str):
            return False
        with self._waiters_lock:
            return self._unawait(hub_id, command_id)

    def _over_budget(self, budget: MessageBudget, hub_id: str, leaf: str) -> None:
        self._count(leaf, "rate")
        if budget.warn_due(hub_id, time.monotonic()):
            log.warning(
                "hub %s sends more than its budget of %g %s a second: those over it are "
                "dropped unread (its events are resent until stored) and counted in "
                "doorstep_hub_messages_dropped_total; logged at most once a minute",
                hub_id,
                budget.per_second,
                "camera heartbeats" if leaf == "camera" else "messages",
            )

    def _ingested(
        self, done: asyncio.Future[_Outcome], hub_id: str, leaf: str, payload: bytes, now: datetime
    ) -> None:
        """The writer process's answer, on the loop. If it died with the message in hand,
        the message is stored here instead: ingest is idempotent, so whether or not the
        dead process had committed it, it is stored once. So is a reply whose store failed
        (a deadlock with another `serve` process storing the same reply): stored again,
        or found stored, its entry is read and the request waiting for it woken. The hub
        sends a reply once; its events it sends again until acknowledged."""
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            self._after_commit(done.result())
            return
        if not isinstance(error, ServiceUnavailable):
            log.error("storing a message from %s on %s failed: %s", hub_id, leaf, error)
            if leaf != "reply":
                return
        self._writer.submit(
            lambda tx: self._ingestor.store(tx, hub_id, leaf, payload, now),
            then=self._after_commit,
        )

    def _after_commit(self, outcome: _Outcome) -> None:
        if outcome.ack is not None:
            hub_id, epoch, through = outcome.ack
            body = Ack(epoch=epoch, through_seq=through).model_dump_json().encode()
            self._mqtt.publish(topics.Topics(hub_id).ack, body, qos=1, retain=True)
        if outcome.replay is not None:
            self._request_replay(*outcome.replay)
        if outcome.reply is not None:
            self._wake(*outcome.reply, outcome.loaded)
        if outcome.stale_shadow is not None and self.on_stale_shadow is not None:
            self.on_stale_shadow(outcome.stale_shadow)
        if outcome.changed:
            with self._changed:
                self._changed.notify_all()

    def wait_for_change(self, timeout: float) -> None:
        """Block until an ingested message has changed something (or `timeout` passes)."""
        with self._changed:
            self._changed.wait(timeout)

    def _wake(self, hub_id: str, reply: Reply, loaded: access.EntryView | None) -> None:
        """Answer the request waiting for `reply`, if its command was sent to `hub_id`: a
        hub's reply naming another hub's command wakes nobody."""
        with self._waiters_lock:
            waiter = self._waiters.get(reply.command_id)
            if waiter is None or waiter.hub_id != hub_id:
                return
            self._drop_waiter(reply.command_id)
        if not waiter.future.done():
            waiter.future.set_result(Answer(reply, loaded))

    def _sweep_loop(self) -> None:
        last_sweep = 0.0
        while not self._stopping.wait(BEAT_CHECK_SECONDS):
            self._check_beats()
            if time.monotonic() - last_sweep >= SWEEP_SECONDS:
                last_sweep = time.monotonic()
                now = self._clock.now()
                self._background(functools.partial(access.expire_stale, now=now))
                self._background(functools.partial(ingest.retry_failed_effects, now=now))

    # --- camera heartbeats ---------------------------------------------------------------

    def _note_beat(self, hub_id: str, payload: bytes) -> None:
        try:
            beat = CameraBeat.model_validate_json(payload)
        except ValidationError:
            log.warning("dropped a malformed camera heartbeat from %s", hub_id)
            return
        with self._beats_lock:
            self._beats[(hub_id, beat.entry_id)] = time.monotonic()

    def _check_beats(self) -> None:
        """Entries whose camera heartbeats fell silent: the service's own check, for a
        hub that cannot raise `camera_lost` itself (dead, or cut off)."""
        now = time.monotonic()
        with self._beats_lock:
            silent = [(key, now - seen) for key, seen in self._beats.items()
                      if now - seen > CAMERA_SILENCE_SECONDS]  # fmt: skip
            for key, _age in silent:
                del self._beats[key]
        for (hub_id, entry_id), age in silent:
            self._background(
                functools.partial(
                    access.camera_silent,
                    hub_id=hub_id,
                    entry_id=entry_id,
                    silent_for=age,
                    now=self._clock.now(),
                )
            )

    def _background(self, job: Callable[[Tx], Any]) -> None:
        """A writer job of the link's own threads: to the writer process while it runs
        (`hotwriter.Jobs`), else to this process's writer thread."""
        hot = self.hot
        if hot is not None and hot.ready:
            hot.submit(job)
        else:
            self._writer.submit(job)
