"""Each hub's message budget at the service's ingest (`hublink.link.MessageBudget`), with
the running service, real Mosquitto and real hubs (in-process): a hub whose broker
password was taken floods the service with 2,000 validly signed events; the service
stores no more than the budget allows in that window, drops the rest unread, counts them
in the metrics and warns once; another home's entry meanwhile completes; and when the
real hub comes back, its resends store every one of those events exactly once. A hub
sending within its budget (a reconnect with a full batch of 500 events) loses nothing.
The budget is the operator's to set (`DOORSTEP_HUBLINK__*`). A hub over its budget still
answers a courier who waits for it (its reply, sent once, is let through), but no flood of
replies naming other commands, or another hub's, gets through or wakes anyone.
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
from doorstep.protocol import PROTOCOL_VERSION, topics
from doorstep.protocol.messages import CameraBeat, Command, CommandKind, EventKind, Reply
from doorstep.protocol.mqtt import close, connect, make_client
from doorstep.settings import HubLinkSettings
from polling import wait_until

TOKEN = secrets.token_urlsafe(32)
FLOOD = 2000
BEATS = 10  # camera heartbeats among the flood: they have a budget of their own
# The flood test's budget: small beside the flood; its burst holds a whole resend batch
# (500 events, every 3 s), so that the hub's resends catch up in seconds.
FLOOD_BUDGET = HubLinkSettings(messages_per_second=200.0, message_burst=500)
# A budget that a hub spends in seconds and that never refills while a test runs.
SPENT_BUDGET = HubLinkSettings(
    messages_per_second=0.001, message_burst=30, camera_beats_per_second=0.001, camera_beat_burst=3
)
WARNING = "sends more than its budget"


@pytest.fixture
def budget() -> HubLinkSettings:
    """The hub message budget the service runs with: as `serve` has it, unless a test says
    otherwise."""
    return HubLinkSettings()


@pytest.fixture(autouse=True)
def _budget_in_force(budget: HubLinkSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Autouse: in force before the service (and its hub link) starts; set as an operator
    # sets it, in the environment the service's settings are read from.
    for name, value in budget.model_dump().items():
        monkeypatch.setenv(f"DOORSTEP_HUBLINK__{name.upper()}", str(value))


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
    per_second, burst = FLOOD_BUDGET.messages_per_second, FLOOD_BUDGET.message_burst
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


def _send(home: demo.Home, leaf: str, payloads: list[bytes]) -> None:
    """Publish each payload on the hub's `leaf` topic with the hub's own broker
    credentials (as whoever read them off the device would), and wait until the broker
    has them all."""
    config = hub_config.load(home.hub_dir)
    assert config is not None
    topic = topics.Topics(home.hub_id).leaf(leaf)
    client = make_client(f"forger-{secrets.token_hex(4)}", config.broker)
    connect(client, config.broker)
    try:
        sent = [client.publish(topic, payload, qos=1) for payload in payloads]
        for info in sent:
            info.wait_for_publish(timeout=30)
            assert info.is_published()
    finally:
        close(client)


def _replies(command_ids: list[str]) -> list[bytes]:
    return [Reply(command_id=c, result="ok").model_dump_json().encode() for c in command_ids]


def _dropped(live: Any, leaf: str) -> float:
    return _counted(live, "doorstep_hub_messages_dropped_total", kind=leaf, reason="rate")


def _sent_and_counted(live: Any, home: demo.Home, leaf: str, payloads: list[bytes]) -> float:
    """Send the payloads as `home`'s hub and wait until the service has counted them all
    (received, and dropped or handed on); how many of them it dropped for the budget."""
    received = _counted(live, "doorstep_hub_messages_total", kind=leaf)
    dropped = _dropped(live, leaf)
    _send(home, leaf, payloads)
    wait_until(
        lambda: (
            _counted(live, "doorstep_hub_messages_total", kind=leaf) - received >= len(payloads)
        ),
        timeout=30,
        what=f"the service to receive the hub's {leaf} messages",
    )
    return _dropped(live, leaf) - dropped


def _spend_budget(live: Any, home: demo.Home) -> None:
    """Spend the hub's whole budget (`SPENT_BUDGET`) on replies naming commands nobody
    sent: those beyond it are dropped."""
    unknown = _replies([secrets.token_hex(12) for _ in range(2 * SPENT_BUDGET.message_burst)])
    dropped = _sent_and_counted(live, home, "reply", unknown)
    assert dropped >= len(unknown) - SPENT_BUDGET.message_burst


@pytest.mark.parametrize("budget", [SPENT_BUDGET])
def test_the_budget_is_the_operators_to_set(live: Any, world: demo.World) -> None:
    """`DOORSTEP_HUBLINK__*`: with a burst of 30 messages and 3 camera heartbeats, what a
    hub sends beyond them is dropped (`serve`'s defaults, 600 and 40, would take it all)."""
    home = world.homes[0]
    replies = _replies([secrets.token_hex(12) for _ in range(100)])
    beat = CameraBeat(entry_id="ent-none", access_point="front", state="live", frames=1)

    dropped = _sent_and_counted(live, home, "reply", replies)
    dropped_beats = _sent_and_counted(live, home, "camera", [beat.model_dump_json().encode()] * 10)

    assert len(replies) - SPENT_BUDGET.message_burst <= dropped < len(replies)
    assert dropped_beats == 10 - SPENT_BUDGET.camera_beat_burst


@pytest.mark.parametrize("budget", [SPENT_BUDGET])
def test_a_hub_over_its_budget_still_answers_the_courier_who_waits(
    live: Any, world: demo.World
) -> None:
    """The hub's replies to the courier's requests are let through, so they are answered
    (201, then 200) rather than timed out (202); the rest it sends is still dropped."""
    home, courier = world.homes[0], world.couriers[0][1]
    assert courier.phone is not None
    delivery = demo.book(world, home, ["PKG-1"])
    _spend_budget(live, home)
    events_dropped = _dropped(live, "events")

    asked = courier.http.post(
        "/v1/courier/entries?wait=challenge",
        json={"delivery_id": delivery["id"], "barcode": "PKG-1", "latitude": home.latitude,
              "longitude": home.longitude, "accuracy_m": 8.0, "nobody_answered": True,
              "device_key_id": courier.phone.key_id},
    )  # fmt: skip
    assert asked.status_code == 201, asked.text
    entry = asked.json()
    assert entry["state"] == "authorized" and entry["to_sign"]
    unlocked = courier.http.post(
        f"/v1/courier/entries/{entry['id']}/unlock?wait=unlocked",
        json={"proof": courier.phone.prove(entry["to_sign"])},
    )
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["state"] == "unlocked"
    # The unlock's events (published before its reply) are still over the budget.
    wait_until(
        lambda: _dropped(live, "events") > events_dropped,
        timeout=15,
        what="the hub's events over its budget to be dropped",
    )


def _unanswerable_command(home: demo.Home) -> Command:
    """A command for `home`'s hub, which is stopped: only a forger answers it."""
    home.hub_process.stop()
    return Command(
        v=PROTOCOL_VERSION,
        command_id=secrets.token_hex(12),
        kind=CommandKind.UNLOCK,
        not_after=int(time.time()) + 30,
        entry_id="ent-none",
        access_point="front",
        grant="AA",
    )


@pytest.mark.parametrize("budget", [SPENT_BUDGET])
def test_a_hub_cannot_answer_another_hubs_command(
    live: Any, homes: tuple[demo.Home, demo.Home]
) -> None:
    """A reply naming a command sent to another hub wakes nobody, within its budget or
    over it; over it, it is dropped unread like any other."""
    forger, other = homes
    service_link = live.runtime.link
    command = _unanswerable_command(other)
    waiter = service_link.expect_reply(command.command_id)
    service_link.publish_command(other.hub_id, command)
    forged = _replies([command.command_id])

    try:
        assert _sent_and_counted(live, forger, "reply", forged) == 0  # within its budget
        _writer_drained(live)
        assert not waiter.future.done()

        _spend_budget(live, forger)
        assert _sent_and_counted(live, forger, "reply", forged) == 1  # over it: dropped
        _writer_drained(live)
        assert not waiter.future.done()
    finally:
        service_link.forget(command.command_id)
