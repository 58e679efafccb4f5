"""Each hub's message budget at the service's ingest (`hublink.link.MessageBudget`), with
the running service, real Mosquitto and real hubs (in-process): a hub whose broker
password was taken floods the service with 2,000 validly signed events; the service
stores no more than the budget allows in that window, drops the rest unread, counts them
in the metrics and warns once; another home's entry meanwhile completes; and when the
real hub comes back, its resends store every one of those events exactly once. A hub
sending within its budget (a reconnect with a full batch of 500 events) loses nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text

from doorstep import demo
from doorstep.hub import config as hub_config
from doorstep.hub.journal import Journal
from doorstep.hub.runner import HubOptions
from doorstep.hublink import link
from doorstep.protocol import topics
from doorstep.protocol.messages import CameraBeat, EventKind
from doorstep.protocol.mqtt import close, connect, make_client
from polling import wait_until

TOKEN = secrets.token_urlsafe(32)
FLOOD = 2000
BEATS = 10  # camera heartbeats among the flood: they have a budget of their own
# The flood test's budget: small beside the flood; its burst holds a whole resend batch
# (500 events, every 3 s), so that the hub's resends catch up in seconds.
FLOOD_BUDGET = (200.0, 500)
WARNING = "sends more than its budget"


@pytest.fixture
def budget() -> tuple[float, int]:
    """The hub message budget the service runs with (per second, burst): as `serve` has
    it, unless a test says otherwise."""
    return link.HUB_MESSAGES_PER_SECOND, link.HUB_MESSAGE_BURST


@pytest.fixture(autouse=True)
def _budget_in_force(budget: tuple[float, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # Autouse: in force before the service (and its hub link) starts.
    monkeypatch.setattr(link, "HUB_MESSAGES_PER_SECOND", budget[0])
    monkeypatch.setattr(link, "HUB_MESSAGE_BURST", budget[1])


@pytest.fixture
def homes(live: Any, world: demo.World) -> Iterator[tuple[demo.Home, demo.Home]]:
    """Two homes of the world, each with its own hub running in-process (the second
    started as the world's own fixture starts the first)."""
    in_process = type(world.homes[0].hub_process)

    def launch(service: demo.Service, hub_dir: Path, code: str) -> Any:
        return in_process(HubOptions(data_dir=hub_dir, service_url=service.url, claim_code=code))

    second = demo.add_home(live.service, world, 2, lambda _m: None, launch)
    world.homes.append(second)
    yield world.homes[0], second


def _backlog(home: demo.Home, count: int) -> tuple[int, list[bytes]]:
    """Stop the home's hub and journal `count` events as it would while cut off from
    the broker (a boot epoch of their own); their epoch and the bytes the hub sends."""
    home.hub_process.stop()
    journal = Journal(
        home.hub_dir / "journal.db",
        hub_id=home.hub_id,
        signing_key=hub_config.signing_key(home.hub_dir),
    )
    try:
        for n in range(count):
            kind = EventKind.DOOR_OPENED if n % 2 == 0 else EventKind.DOOR_CLOSED
            journal.append(kind, {"access_point": "front"}, time.time())
        epoch = journal.epoch
        events = journal.unacknowledged(limit=count + 100)
    finally:
        journal.close()
    return epoch, [e.model_dump_json().encode() for e in events if e.epoch == epoch]


def _restart(home: demo.Home) -> None:
    """Start the home's stopped in-process hub again, on its data dir as it is."""
    stopped: Any = home.hub_process
    home.hub_process = type(stopped)(stopped.options)


def _flood(home: demo.Home, events: list[bytes]) -> None:
    """Publish every event as fast as the broker takes them, with the hub's own broker
    credentials (as whoever read them off the device would), and a camera heartbeat after
    every `len(events) // BEATS` of them."""
    config = hub_config.load(home.hub_dir)
    assert config is not None
    hub = topics.Topics(home.hub_id)
    beat = CameraBeat(entry_id="ent-none", access_point="front", state="live", frames=1)
    every = len(events) // BEATS
    client = make_client(f"flood-{secrets.token_hex(4)}", config.broker)
    connect(client, config.broker)
    try:
        sent = []
        for n, payload in enumerate(events, start=1):
            sent.append(client.publish(hub.events, payload, qos=1))
            if n % every == 0:
                sent.append(client.publish(hub.camera, beat.model_dump_json().encode(), qos=1))
        for info in sent:
            info.wait_for_publish(timeout=30)
            assert info.is_published()
    finally:
        close(client)


def _stored(live: Any, hub_id: str, epoch: int) -> tuple[int, int, int, int]:
    """The epoch's stored events: rows, distinct seqs, lowest and highest seq."""
    with live.sessions() as session:
        row = session.execute(
            text(
                "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MIN(seq), 0),"
                " COALESCE(MAX(seq), 0) FROM hub_events WHERE hub_id = :hub AND epoch = :epoch"
            ),
            {"hub": hub_id, "epoch": epoch},
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _counted(live: Any, name: str, **labels: str) -> float:
    value = live.runtime.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def _scrape(live: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        scrape = http.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert scrape.status_code == 200, scrape.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape.text)
        for sample in family.samples
    }


def _writer_drained(live: Any) -> None:
    """Every message the link handed the writer so far is committed (it runs its jobs in
    order)."""
    live.runtime.writer.submit(lambda _tx: None).result(timeout=30)


@pytest.mark.parametrize("budget", [FLOOD_BUDGET])
def test_a_flooding_hub_is_held_to_its_budget_and_its_events_still_arrive_once(
    live: Any,
    world: demo.World,
    homes: tuple[demo.Home, demo.Home],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live.settings, "metrics_token", SecretStr(TOKEN))
    caplog.set_level(logging.WARNING, logger="doorstep.hublink.link")
    per_second, burst = FLOOD_BUDGET
    flooded, other = homes
    epoch, payloads = _backlog(flooded, FLOOD)
    assert len(payloads) == FLOOD
    received = _counted(live, "doorstep_hub_messages_total", kind="events")
    beats = _counted(live, "doorstep_hub_messages_total", kind="camera")

    started = time.monotonic()
    _flood(flooded, payloads)
    wait_until(
        lambda: _counted(live, "doorstep_hub_messages_total", kind="events") >= received + FLOOD,
        timeout=30,
        what="the service to receive the whole flood",
    )
    window = time.monotonic() - started
    _writer_drained(live)

    rows, _distinct, _low, _high = _stored(live, flooded.hub_id, epoch)
    assert rows <= burst + per_second * window, (rows, window)
    dropped = _counted(live, "doorstep_hub_messages_dropped_total", kind="events", reason="rate")
    assert dropped == FLOOD - rows  # everything not stored was dropped unread, and counted
    assert _counted(live, "doorstep_hub_messages_total", kind="camera") == beats + BEATS
    assert _counted(live, "doorstep_hub_messages_dropped_total", kind="camera", reason="rate") == 0

    # The real hub comes back: its resends (and the replays the service asks for) store
    # the rest, at the budget's rate, while another home's courier gets in.
    _restart(flooded)
    courier = world.couriers[0][1]
    delivery = demo.book(world, other, ["PKG-B-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-B-1", other.latitude,
                               other.longitude)  # fmt: skip
    assert entry["state"] == "unlocked", entry
    other.door("open_door")
    other.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"

    final = wait_until(
        lambda: (s := _stored(live, flooded.hub_id, epoch)) == (FLOOD, FLOOD, 1, FLOOD) and s,
        timeout=60,
        what="every flooded event to be stored through the hub's resends",
    )
    assert final == (FLOOD, FLOOD, 1, FLOOD)  # each one once, none missing
    wait_until(
        lambda: flooded.hub_process.agent.journal.pending_count() == 0,
        timeout=30,
        what="the hub to see all its events acknowledged",
    )
    samples = _scrape(live)
    key = (("kind", "events"), ("reason", "rate"))
    assert samples[("doorstep_hub_messages_dropped_total", key)] >= dropped > 0
    warnings = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    # At most once a minute, however many were dropped (the test takes seconds).
    minutes = (time.monotonic() - started) // link.BUDGET_WARNING_SECONDS
    assert 1 <= len(warnings) <= 1 + minutes, warnings
    assert flooded.hub_id in warnings[0]


def test_a_hub_sending_within_its_budget_loses_nothing(
    live: Any, world: demo.World, caplog: pytest.LogCaptureFixture
) -> None:
    """As `serve` runs: a hub back from the broker sends its status, its reported
    document and a whole resend batch (500 events) at once; none of it is dropped."""
    caplog.set_level(logging.WARNING, logger="doorstep.hublink.link")
    hub = world.homes[0]
    epoch, payloads = _backlog(hub, 500)
    assert len(payloads) == 500

    _restart(hub)
    stored = wait_until(
        lambda: (s := _stored(live, hub.hub_id, epoch)) == (500, 500, 1, 500) and s,
        timeout=30,
        what="the hub's batch to be stored",
    )
    assert stored == (500, 500, 1, 500)
    for kind in ("events", "status", "reported"):
        dropped = _counted(live, "doorstep_hub_messages_dropped_total", kind=kind, reason="rate")
        assert dropped == 0, kind
    assert not [r for r in caplog.records if WARNING in r.getMessage()]
