"""A request that waits for its hub (`wait=challenge`, `wait=unlocked`) gets, with the
hub's reply, its entry as the transaction that stores the reply left it: the hub's event,
published before its reply, is already applied, and no further writer job is needed. A
read that fails costs only itself: the waiter is still woken, with the reply, and the
reply's transaction (PostgreSQL aborts one after a failed statement) still commits.

Driven through the running service's own hub link and a real hub (in-process, real
Mosquitto), with a command the hub refuses at once (it has expired): the hub journals a
`command.refused` event naming the entry, then replies. The reply is stored by the hot
paths' writer process (the default) or, in the test that breaks the read, by the service's
own writer thread, where the read can be broken.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.access import router as access_router
from doorstep.access import service as access_service
from doorstep.access.models import Entry, EntryState
from doorstep.db import new_id
from doorstep.hublink.link import HubLink
from doorstep.hublink.models import HubEvent
from doorstep.protocol import PROTOCOL_VERSION
from doorstep.protocol.messages import Command, CommandKind
from doorstep.sql import Tx

REPLY_TIMEOUT = 15.0


@pytest.fixture
def writer_process() -> bool:
    """As `serve` runs: the hot paths through the writer process (`doorstep.hotwriter`)."""
    return True


def _expired_unlock(entry_id: str, command_id: str) -> Command:
    return Command(
        v=PROTOCOL_VERSION,
        command_id=command_id,
        kind=CommandKind.UNLOCK,
        not_after=int(time.time()) - 60,
        entry_id=entry_id,
        access_point="front",
        grant="AA",
    )


def _link(live: Any) -> HubLink:
    link = live.runtime.link
    assert link is not None, "the service runs without a hub link"
    return link


def _authorized_entry(live: Any, world: demo.World, command_id: str) -> str:
    """An entry waiting for its hub, as a decision leaves it (the hub has not seen it)."""
    entry_id, now = new_id("ent"), datetime.now(UTC)
    with live.sessions() as session:
        session.add(
            Entry(
                id=entry_id,
                courier_id=world.couriers[0][0],
                home_id=world.homes[0].id,
                hub_id=world.homes[0].hub_id,
                state=EntryState.AUTHORIZED,
                command_id=command_id,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    return entry_id


def test_the_waiter_gets_the_entry_as_the_replys_transaction_left_it(
    live: Any, world: demo.World
) -> None:
    assert live.runtime.hot is not None and live.runtime.hot.ready
    command_id = secrets.token_hex(12)
    entry_id = _authorized_entry(live, world, command_id)
    command = _expired_unlock(entry_id, command_id)

    waiter = _link(live).expect_reply(command.command_id)
    _link(live).publish_command(world.homes[0].hub_id, command)

    answer = waiter.future.result(timeout=REPLY_TIMEOUT)
    assert (answer.reply.result, answer.reply.reason) == ("refused", "command_expired")
    assert answer.loaded is not None
    assert (answer.loaded.id, answer.loaded.state) == (entry_id, EntryState.REFUSED)
    assert answer.loaded.reason == "command_expired"


@pytest.mark.parametrize("writer_process", [False])
def test_a_read_that_fails_still_wakes_the_waiter_with_the_reply(
    live: Any, world: demo.World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    command_id = secrets.token_hex(12)
    entry_id = _authorized_entry(live, world, command_id)
    command = _expired_unlock(entry_id, command_id)

    def broken(tx: Tx, _entry_id: str) -> None:
        tx.one("SELECT nothing FROM no_such_table")  # fails in the database itself

    monkeypatch.setattr(access_service, "load_entry", broken)
    waiter = _link(live).expect_reply(command.command_id)
    with caplog.at_level(logging.ERROR, logger="doorstep.hublink.link"):
        _link(live).publish_command(world.homes[0].hub_id, command)
        answer = waiter.future.result(timeout=REPLY_TIMEOUT)

    assert (answer.reply.result, answer.loaded) == ("refused", None)
    assert f"reading entry {entry_id} for its reply failed" in caplog.text
    with live.sessions() as session:
        kinds = session.scalars(select(HubEvent.kind).where(HubEvent.entry_id == entry_id)).all()
        assert kinds == ["command.refused"]
        refused = session.get(Entry, entry_id)
        assert refused is not None and refused.state == EntryState.REFUSED  # committed


def _silent_hub(live: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Command]]:
    """The service's commands held back (as by a hub that does not answer), and a short
    wait for the hub's reply; `monkeypatch.undo()` ends both."""
    held: list[tuple[str, Command]] = []
    monkeypatch.setattr(
        _link(live), "publish_command", lambda hub_id, command: held.append((hub_id, command))
    )
    monkeypatch.setattr(live.runtime.settings.entry, "hub_reply_timeout_seconds", 0.5)
    return held


def _entry_body(world: demo.World) -> dict[str, Any]:
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    assert courier.phone is not None
    return {"delivery_id": delivery["id"], "barcode": "PKG-1", "latitude": home.latitude,
            "longitude": home.longitude, "accuracy_m": 8.0, "nobody_answered": True,
            "device_key_id": courier.phone.key_id}  # fmt: skip


def test_a_request_whose_hub_does_not_answer_in_time_is_accepted_not_created(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """202: the entry is made and its command sent, but the hub has not answered within
    the wait; the client follows the entry. Once the hub answers, all is as usual."""
    courier, body = world.couriers[0][1], _entry_body(world)
    held = _silent_hub(live, monkeypatch)

    answer = courier.http.post("/v1/courier/entries?wait=unlocked", json=body)

    assert answer.status_code == 202, answer.text
    entry = answer.json()
    assert (entry["state"], entry["to_sign"]) == ("authorized", None)
    [(hub_id, command)] = held
    monkeypatch.undo()  # the command reaches the hub after all, late
    _link(live).publish_command(hub_id, command)
    challenged = demo.wait_challenge(courier, entry["id"])
    assert challenged["to_sign"]
    unlocked = demo.prove_and_unlock(courier, challenged)  # the hub answers: 200
    assert unlocked["state"] == "unlocked"


def test_a_proof_whose_hub_does_not_answer_in_time_is_accepted_then_followed(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    courier = world.couriers[0][1]
    assert courier.phone is not None
    asked = courier.call(
        "POST", "/v1/courier/entries?wait=unlocked", 201, json=_entry_body(world)
    )  # the hub answered with its challenge: 201, as ever
    proof = courier.phone.prove(asked["to_sign"])
    held = _silent_hub(live, monkeypatch)

    answer = courier.http.post(
        f"/v1/courier/entries/{asked['id']}/unlock?wait=unlocked", json={"proof": proof}
    )

    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "authorized"
    [(hub_id, command)] = held
    monkeypatch.undo()
    _link(live).publish_command(hub_id, command)
    assert demo.wait_entry(courier, asked["id"], "unlocked")["state"] == "unlocked"


def test_a_request_that_stops_waiting_leaves_no_waiter_behind(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that goes away mid-wait cancels its request: its waiter must go with it,
    or every abandoned request would leave one (and its hub's budget exception) for ever."""
    command_id = secrets.token_hex(12)
    entry_id = _authorized_entry(live, world, command_id)
    command = _expired_unlock(entry_id, command_id)
    with live.sessions() as session:
        view = access_service.load_entry(Tx.of_session(session), entry_id)
    assert view is not None
    decision = access_service.EntryDecision(view, command, world.homes[0].hub_id)
    held = _silent_hub(live, monkeypatch)
    monkeypatch.setattr(live.runtime.settings.entry, "hub_reply_timeout_seconds", 30.0)

    async def client_goes_away() -> None:
        published = asyncio.Event()  # the command is out: the request now waits for the hub
        send = _link(live).publish_command

        def publish(hub_id: str, sent: Command) -> None:
            send(hub_id, sent)
            published.set()

        monkeypatch.setattr(_link(live), "publish_command", publish)
        request = asyncio.ensure_future(access_router.send_and_await(live.runtime, decision, True))
        await published.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request

    asyncio.run(client_goes_away())

    assert held == [(world.homes[0].hub_id, command)]
    assert command_id not in _link(live)._waiters
