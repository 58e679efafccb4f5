"""A fleet of simulated home hubs in one process, answering the service's unlock commands
through the real hub code.

    python -m bench.hubsim --data-dir DIR --broker-url mqtt://user:pw@host:port \
        --hub-secret HEX

One paho client subscribes to `doorstep/hubs/+/cmd`, driven by an asyncio loop as the
service drives its own (`doorstep.protocol.mqtt_asyncio.LoopDriver`: what a pass of the
loop publishes is written together, corked), not by paho's network thread, whose wake-ups
for every publish cost this one process, standing in for thousands of hubs, more than
the hub code itself. Each command goes to the `HubAgent`
of its hub (`doorstep.hub.agent`, unchanged): it verifies the grant against the issuer
keys pinned from `<data dir>/keys/` (`GrantVerifier`), records the token as used in its
`Journal`, unlocks its `SimulatedLock` (motor time 0), journals and signs the
`lock.unlocked` event with the hub's own key and publishes the event and the reply. The
agents publish through the shared client (`agent._client`) on their own topics.

Simplifications, all named in the report:
- The client logs in as its own user with the service's ACL (readwrite doorstep/hubs/#),
  not as one broker user per hub.
- Journals are in-memory SQLite databases (same schema, same code): one process stands
  in for thousands of hubs, each of which would fsync its own storage in parallel; done
  serially here, the fsyncs would measure this machine's disk, not the service.
- Agents are built ahead of each run (`prepare`), because building one (mostly its
  journal) takes about a millisecond that a real hub never spends per command. A command
  for a hub that was not prepared is counted and dropped.
- Acks from the service are not consumed and nothing is resent: the path under test is
  command -> verified unlock -> event and reply.
- Nobody opens the doors, so each hub would relock its door after
  `RelockPolicy.unopened_seconds` (60 s) and report it: a wave of relocks from earlier
  runs would land on the service during later ones and move their entries on. The
  simulated hubs wait an hour instead (`UNOPENED_SECONDS`); the timer is still set.

Control is line-based on stdin/stdout: `prepare START COUNT` answers `ready N SECONDS`,
`stats` answers one JSON line, `quit` answers the final stats and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho

from bench.seed import ACCESS_POINT_SLUG, hub_id, hub_key
from doorstep import heap
from doorstep.access import keys as issuer_keys
from doorstep.hub.agent import HubAgent, RelockPolicy
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.hub.scheduling import Cancellable, Scheduler
from doorstep.protocol import topics
from doorstep.protocol.grants import GrantVerifier
from doorstep.protocol.messages import b64decode
from doorstep.protocol.mqtt import BrokerAddress, make_client
from doorstep.protocol.mqtt_asyncio import LoopDriver

log = logging.getLogger("bench.hubsim")
IN_MEMORY = Path(":memory:")
UNOPENED_SECONDS = 3600.0  # longer than any bench run: see the module docstring


class LoopScheduler:
    """The agents' and locks' timers (door watch, relock deadline) on the event loop, where
    their callbacks may publish: the hub's own `ThreadScheduler` starts an OS thread per
    timer, two for every unlock here, and a publish from those threads would reach the
    client off its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def call_later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        return self._loop.call_later(delay, fn)


class Fleet:
    def __init__(
        self, *, issuer: dict[str, bytes], hub_secret: bytes, scheduler: Scheduler
    ) -> None:
        self._issuer = issuer
        self._secret = hub_secret
        self._scheduler = scheduler
        self._agents: dict[str, HubAgent] = {}
        self._client: paho.Client | None = None
        self._stats: Counter[str] = Counter()
        self._grant_bytes: list[int] = []
        self._command_bytes: list[int] = []
        self._busy_seconds = 0.0
        self._lock = threading.Lock()

    def attach(self, client: paho.Client) -> None:
        self._client = client
        for agent in self._agents.values():
            agent._client = client

    def prepare(self, start: int, count: int) -> int:
        built = 0
        for n in range(start, start + count):
            hub = hub_id(n)
            if hub in self._agents:
                continue
            agent = self._build(hub)
            with self._lock:
                self._agents[hub] = agent
            built += 1
        return built

    def _build(self, hub: str) -> HubAgent:
        journal = Journal(IN_MEMORY, hub_id=hub, signing_key=hub_key(self._secret, hub))
        verifier = GrantVerifier(hub_id=hub, issuer_keys=self._issuer, clock=time.time)
        agent = HubAgent(
            hub_id=hub,
            journal=journal,
            locks={ACCESS_POINT_SLUG: SimulatedLock(motor_seconds=0.0, scheduler=self._scheduler)},
            verifier=verifier,
            clock=time.time,
            scheduler=self._scheduler,
            relock=RelockPolicy(unopened_seconds=UNOPENED_SECONDS),
        )
        agent._client = self._client  # publish through the shared connection
        return agent

    def on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        started = time.perf_counter()
        parsed = topics.parse(message.topic)
        with self._lock:
            agent = self._agents.get(parsed[0]) if parsed else None
        if agent is None or parsed is None or parsed[1] != "cmd":
            self._stats["dropped_unknown_hub"] += 1
            return
        self._measure(message.payload)
        try:
            agent.handle_command(message.payload)
            self._stats["commands"] += 1
        except Exception:  # the process edge, as in HubAgent._on_message
            log.exception("command handling failed")
            self._stats["failed"] += 1
        self._busy_seconds += time.perf_counter() - started

    def _measure(self, payload: bytes) -> None:
        self._command_bytes.append(len(payload))
        try:
            grant = orjson.loads(payload).get("grant")
            if isinstance(grant, str):
                self._grant_bytes.append(len(b64decode(grant)))
        except (orjson.JSONDecodeError, ValueError, AttributeError):
            self._stats["unparsed"] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            agents = list(self._agents.values())
        unlocks = sum(
            lock.actuations
            for agent in agents
            for lock in agent.locks.values()
            if isinstance(lock, SimulatedLock)
        )
        return {
            "agents": len(agents),
            "unlocks": unlocks,
            **self._stats,
            "handler_seconds": round(self._busy_seconds, 3),
            "grant_bytes": _spread(self._grant_bytes),
            "command_bytes": _spread(self._command_bytes),
        }


def _spread(values: list[int]) -> dict[str, int] | None:
    if not values:
        return None
    return {"min": min(values), "max": max(values), "count": len(values)}


async def _control(fleet: Fleet) -> None:
    while line := await asyncio.to_thread(sys.stdin.readline):
        words = line.split()
        if not words:
            continue
        if words[0] == "prepare" and len(words) == 3:
            started = time.perf_counter()
            # Off the loop, which goes on answering commands meanwhile.
            built = await asyncio.to_thread(fleet.prepare, int(words[1]), int(words[2]))
            # The agents live until the end: keep them out of every later collection, as
            # a real hub's one agent would be (a full collection walking thousands of
            # journals and verifiers paused every hub here for up to 0.2 s).
            heap.freeze_startup()
            _answer(f"ready {built} {time.perf_counter() - started:.3f}")
        elif words[0] == "stats":
            _answer(orjson.dumps(fleet.stats()).decode())
        elif words[0] == "quit":
            break
        else:
            _answer(f"error unknown command {line.strip()!r}")
    _answer(orjson.dumps(fleet.stats()).decode())


def _answer(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hubsim")
    parser.add_argument("--data-dir", type=Path, required=True, help="the service's data dir")
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--hub-secret", required=True, help="hex; hub keys derive from it")
    parser.add_argument("--client-id", default="bench-hubsim")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    issuer = issuer_keys.load_or_create(args.data_dir / "keys").public
    secret = bytes.fromhex(args.hub_secret)
    asyncio.run(_serve(issuer, secret, BrokerAddress.from_url(args.broker_url), args.client_id))
    return 0


async def _serve(
    issuer: dict[str, bytes], secret: bytes, address: BrokerAddress, client_id: str
) -> None:
    scheduler = LoopScheduler(asyncio.get_running_loop())
    fleet = Fleet(issuer=issuer, hub_secret=secret, scheduler=scheduler)
    client = make_client(client_id, address)
    client.on_message = fleet.on_message
    subscribed = asyncio.Event()
    client.on_connect = lambda c, *_: c.subscribe(f"{topics.ROOT}/+/cmd", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    fleet.attach(client)
    driver = LoopDriver(client, address)
    await driver.start()
    try:
        try:
            await asyncio.wait_for(subscribed.wait(), 10)
        except TimeoutError:
            raise SystemExit("the broker did not confirm the subscription") from None
        _answer("connected")
        await _control(fleet)
    finally:
        driver.stop()


if __name__ == "__main__":
    raise SystemExit(main())
