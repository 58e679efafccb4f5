"""An entry called off before its unlock reached the hub stays shut.

The service calls an entry off with a lock command naming it (`abort_entry`). The unlock
and the lock travel separately, and with several service processes they may reach the
hub in either order. When the lock comes first, the hub remembers the entry as ended
(in its journal, so across a restart too), and the unlock that follows is refused
`entry_ended` with the bolt never asked to move. The agent runs without MQTT; see
conftest.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.protocol import Reason
from doorstep.protocol.grants import GrantSigner
from doorstep.protocol.messages import CommandKind, EventKind, Reply

if TYPE_CHECKING:
    from conftest import Hub


def _call_off(hub: Hub) -> Reply | None:
    """The lock command the service sends for an entry its courier called off."""
    token = hub.grant(scope=("lock",), entry_id=hub.entry_id)
    return hub.send(hub.command(token, kind=CommandKind.LOCK, entry_id=hub.entry_id))


def _assert_unlock_refused(hub: Hub) -> None:
    unlock = hub.command(hub.grant())
    reply = hub.send(unlock)
    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", Reason.ENTRY_ENDED)
    [refusal] = [
        event
        for event in hub.events(EventKind.COMMAND_REFUSED)
        if event.data.get("command_id") == unlock.command_id
    ]
    assert refusal.data["reason"] == Reason.ENTRY_ENDED
    assert hub.lock.unlock_calls == 0
    assert hub.lock.status().secure


def test_an_unlock_that_arrives_after_its_entrys_lock_is_refused(hub: Hub) -> None:
    called_off = _call_off(hub)
    assert called_off is not None and called_off.result == "ok"  # already locked: said so

    _assert_unlock_refused(hub)


def test_the_called_off_entry_stays_ended_across_a_hub_restart(hub: Hub) -> None:
    _call_off(hub)
    hub.restart()

    _assert_unlock_refused(hub)


def test_a_lock_refused_at_the_door_still_ends_its_entry(hub: Hub) -> None:
    hub.lock.set_online(False)
    refused = _call_off(hub)
    assert refused is not None
    assert (refused.result, refused.reason) == ("refused", Reason.LOCK_NOT_READY)
    hub.lock.set_online(True)

    _assert_unlock_refused(hub)


def test_a_lock_with_a_forged_grant_ends_nothing(hub: Hub) -> None:
    forged = hub.claims(scope=("lock",))
    token = GrantSigner(Ed25519PrivateKey.generate()).sign(forged)
    refused = hub.send(hub.command(token, kind=CommandKind.LOCK))
    assert refused is not None and refused.result == "refused"

    unlock = hub.command(hub.grant())
    hub.send(unlock)
    reply = hub.stored_reply(unlock.command_id)
    assert reply is not None and reply.result == "ok"
    assert hub.lock.unlock_calls == 1


def test_another_entrys_lock_does_not_end_this_one(hub: Hub) -> None:
    token = hub.grant(scope=("lock",), entry_id="lck-0123456789abcdef")
    hub.send(hub.command(token, kind=CommandKind.LOCK, entry_id="lck-0123456789abcdef"))

    unlock = hub.command(hub.grant())
    hub.send(unlock)
    reply = hub.stored_reply(unlock.command_id)
    assert reply is not None and reply.result == "ok"
