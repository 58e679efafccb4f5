"""A request that waits for its hub (`wait=challenge`, `wait=unlocked`) gets, with the
hub's reply, the entry as the transaction that stores the reply sees it: the hub's event,
published before its reply, is already applied, and no further writer job is needed.
A read that fails costs only itself: the waiter is still woken, with the reply, and the
reply's transaction (PostgreSQL aborts one after a failed statement) still commits.

Driven through the running service's own hub link and a real hub (in-process, real
Mosquitto), with a command the hub refuses at once (it has expired): the hub journals a
`command.refused` event naming the entry, then replies.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.db import new_id
from doorstep.hublink.link import HubLink
from doorstep.hublink.models import HubEvent
from doorstep.protocol import PROTOCOL_VERSION
from doorstep.protocol.messages import Command, CommandKind
from doorstep.sql import Tx

REPLY_TIMEOUT = 15.0


def _expired_unlock(entry_id: str) -> Command:
    return Command(
        v=PROTOCOL_VERSION,
        command_id=secrets.token_hex(12),
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


def test_the_waiter_reads_in_the_transaction_that_stores_the_reply(
    live: Any, world: demo.World
) -> None:
    hub_id, entry_id = world.homes[0].hub_id, new_id("ent")
    command = _expired_unlock(entry_id)

    def refusal_event(tx: Tx) -> tuple[Any, ...] | None:
        return tx.one(
            "SELECT kind FROM hub_events WHERE hub_id = ? AND entry_id = ?", (hub_id, entry_id)
        )

    waiter = _link(live).expect_reply(command.command_id, load=refusal_event)
    _link(live).publish_command(hub_id, command)

    answer = waiter.future.result(timeout=REPLY_TIMEOUT)
    assert (answer.reply.result, answer.reply.reason) == ("refused", "command_expired")
    assert answer.loaded == ("command.refused",)  # the event came first, and is applied


def test_a_read_that_fails_still_wakes_the_waiter_with_the_reply(
    live: Any, world: demo.World, caplog: pytest.LogCaptureFixture
) -> None:
    hub_id, entry_id = world.homes[0].hub_id, new_id("ent")
    command = _expired_unlock(entry_id)

    def broken(tx: Tx) -> None:
        tx.one("SELECT nothing FROM no_such_table")  # fails in the database itself

    waiter = _link(live).expect_reply(command.command_id, load=broken)
    with caplog.at_level(logging.ERROR, logger="doorstep.hublink.link"):
        _link(live).publish_command(hub_id, command)
        answer = waiter.future.result(timeout=REPLY_TIMEOUT)

    assert (answer.reply.result, answer.loaded) == ("refused", None)
    assert f"reading for the waiter of {command.command_id} failed" in caplog.text
    with live.sessions() as session:
        kinds = session.scalars(select(HubEvent.kind).where(HubEvent.entry_id == entry_id)).all()
    assert kinds == ["command.refused"]
