"""Carriers' webhook signing secrets are sealed at rest (`notify.sealing`): a copy of the
database cannot sign a webhook, yet every webhook still verifies at a real receiver (the
HTTP server of `receiver`, which checks each signature as a carrier would). A secret an
earlier version stored in plain still signs, and is sealed when the dispatcher starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, select

from doorstep import demo
from doorstep.clock import SystemClock
from doorstep.notify import sealing
from doorstep.notify.dispatcher import Dispatcher
from doorstep.notify.models import WebhookEndpoint
from doorstep.settings import NotifySettings
from doorstep.sql import Tx, Writer
from doorstep.web.security import load_or_create_key
from polling import poll

if TYPE_CHECKING:
    from conftest import Receiver

LEGACY_SECRET = "whsec_" + "k" * 43  # as an earlier version stored it


@pytest.fixture
def notify_settings() -> NotifySettings:
    return NotifySettings(allow_private_targets=True, poll_seconds=0.1, max_attempts=1)


def _stored_secret(live: Any) -> str:
    with live.sessions() as session:
        return session.scalars(select(WebhookEndpoint.secret)).one()


def test_the_stored_secret_is_sealed_and_webhooks_still_verify(
    live: Any, world: demo.World, receiver: Receiver
) -> None:
    first = world.carrier.call("PUT", "/v1/carrier/webhook", 200, json={"url": receiver.url})
    stored = _stored_secret(live)
    assert first["secret"].startswith("whsec_")  # shown once, in plain, as before
    assert first["secret"] not in stored and not stored.startswith("whsec_")
    rotated = world.carrier.call("PUT", "/v1/carrier/webhook", 200, json={"url": receiver.url})
    assert rotated["secret"] != first["secret"]
    assert rotated["secret"] not in _stored_secret(live)
    receiver.secret = rotated["secret"]
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert "entry.authorized" in receiver.wait_types(["entry.authorized"])
    assert receiver.bad_signatures == 0


# --- a dispatcher on a real database, its rows written as an earlier version wrote them ---


@pytest.fixture
def writer(migrated_engine: Engine) -> Iterator[Writer]:
    writer = Writer(migrated_engine)
    writer.start()
    yield writer
    writer.stop()


@contextmanager
def dispatching(writer: Writer, key: bytes) -> Iterator[None]:
    settings = NotifySettings(allow_private_targets=True, poll_seconds=0.1, max_attempts=1)
    dispatcher = Dispatcher(writer=writer, clock=SystemClock(), settings=settings, key=key)
    dispatcher.start()
    try:
        yield
    finally:
        dispatcher.stop()


def _endpoint(writer: Writer, url: str, secret: str) -> None:
    now = datetime.now(UTC) - timedelta(seconds=10)

    def job(tx: Tx) -> None:
        tx.run("INSERT INTO carriers (id, name, created_at) VALUES ('car1', 'Parcelly', ?)",
               (tx.time(now),))  # fmt: skip
        tx.run(
            "INSERT INTO webhook_endpoints (id, carrier_id, url, secret, active, created_at)"
            " VALUES ('whk1', 'car1', ?, ?, ?, ?)",
            (url, secret, True, tx.time(now)),
        )

    writer.submit(job).result(timeout=30)


def _queue_event(writer: Writer, entry_id: str) -> None:
    at = datetime.now(UTC) - timedelta(seconds=1)
    event_id = f"{entry_id}.done"

    def job(tx: Tx) -> None:
        tx.run(
            "INSERT INTO outbox (id, event_id, event_type, channel, target, payload,"
            " state, attempts, next_attempt_at, created_at)"
            " VALUES (?, ?, 'entry.done', 'webhook', 'whk1', ?j, 'pending', 0, ?, ?)",
            (f"msg-{entry_id}", event_id, tx.json({"id": event_id}), tx.time(at), tx.time(at)),
        )

    writer.submit(job).result(timeout=30)


def _stored(writer: Writer) -> str:
    return _secret_and_states(writer)[0]


def _secret_and_states(writer: Writer) -> tuple[str, list[str]]:
    def read(tx: Tx) -> tuple[str, list[str]]:
        row = tx.one("SELECT secret FROM webhook_endpoints WHERE id = 'whk1'")
        assert row is not None
        states = [state for (state,) in tx.all("SELECT state FROM outbox ORDER BY id")]
        return str(row[0]), states

    return writer.submit(read).result(timeout=30)


def test_a_secret_stored_in_plain_still_signs_and_is_sealed(
    writer: Writer, receiver: Receiver, tmp_path: Path
) -> None:
    key = load_or_create_key(tmp_path / "keys", sealing.KEY_FILE)
    _endpoint(writer, receiver.url, LEGACY_SECRET)
    _queue_event(writer, "ent1")
    receiver.secret = LEGACY_SECRET  # what the carrier was given back then
    with dispatching(writer, key):
        receiver.wait_types(["entry.done"])
        stored = poll(lambda: _stored(writer), lambda now: now != LEGACY_SECRET, 10)
        assert LEGACY_SECRET not in stored
        assert sealing.unseal(key, "whk1", stored) == LEGACY_SECRET
        _queue_event(writer, "ent2")  # and the sealed secret signs the next one
        _, states = poll(lambda: _secret_and_states(writer), lambda r: r[1] == ["sent"] * 2, 10)
    assert states == ["sent", "sent"]
    assert [event_id for event_id, _kind, _body in receiver.received] == ["ent1.done", "ent2.done"]
    assert receiver.bad_signatures == 0


def test_a_secret_that_does_not_open_is_never_used(
    writer: Writer, receiver: Receiver, tmp_path: Path
) -> None:
    """Sealed under another deployment's key (or a key file lost): the message fails
    and nothing is sent, rather than anything signed with a wrong secret."""
    other = load_or_create_key(tmp_path / "other", sealing.KEY_FILE)
    key = load_or_create_key(tmp_path / "keys", sealing.KEY_FILE)
    _endpoint(writer, receiver.url, sealing.seal(other, "whk1", LEGACY_SECRET))
    _queue_event(writer, "ent1")
    with dispatching(writer, key):
        _, states = poll(lambda: _secret_and_states(writer), lambda r: r[1] == ["failed"], 10)
    assert states == ["failed"]
    assert receiver.attempts == []


def test_a_sealed_secret_opens_only_for_its_own_endpoint(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path, sealing.KEY_FILE)
    stored = sealing.seal(key, "whk1", LEGACY_SECRET)
    assert sealing.unseal(key, "whk1", stored) == LEGACY_SECRET
    with pytest.raises(sealing.SealBroken):
        sealing.unseal(key, "whk2", stored)  # copied onto another carrier's endpoint
    with pytest.raises(sealing.SealBroken):
        sealing.unseal(None, "whk1", stored)
    with pytest.raises(sealing.SealBroken):
        sealing.unseal(key, "whk1", "sealed1.not-base64!")
