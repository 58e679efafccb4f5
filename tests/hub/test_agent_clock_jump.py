"""A hub whose wall clock jumps forward (a bad NTP answer, an RTC fault) and comes back.

While its clock is ahead, the hub forgets the used token ids and the ended entries it
believes no grant can still need (`HubAgent.forget_expired`). Once the clock is back,
those grants are alive again in real time: each must still be refused, and the bolt
never asked to move, in this run and after a restart (the journal keeps how far it has
forgotten). The agent's wall clock is `hub.now`, set by hand; see conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from doorstep.hub.drivers.simulated import ManualScheduler
from doorstep.protocol import Reason
from doorstep.protocol.messages import Command, CommandKind, EventKind

if TYPE_CHECKING:
    from conftest import Hub

A_DAY = 24 * 3600


def _hub_on_a_wall_clock(make_hub: Callable[..., Hub]) -> Hub:
    """A hub whose agent reads the time from `hub.now`."""
    hub = make_hub()
    hub.boot_after_crash(ManualScheduler())
    return hub


def _clock_jumps_ahead_and_back(hub: Hub, *, restart: bool) -> None:
    """The clock runs a day ahead long enough for the hub to tidy its journal, then is
    put right; with `restart`, the hub restarts meanwhile."""
    hub.now = hub.now + A_DAY
    hub.agent.forget_expired()
    if restart:
        hub.boot_after_crash(ManualScheduler())
    hub.now = hub.now - A_DAY + 10  # ten seconds on: the grants are still alive


def _assert_refused(hub: Hub, command: Command, reason: Reason) -> None:
    reply = hub.send(command)
    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", reason)
    assert hub.stored_reply(command.command_id) == reply


def _entered_and_secured(hub: Hub, token: bytes) -> None:
    hub.send(hub.command(token))
    assert hub.lock.unlock_calls == 1
    hub.lock.open_door()
    hub.lock.close_door()
    assert hub.events(EventKind.ENTRY_SECURED)
    assert hub.lock.status().secure


def test_a_used_grant_is_refused_after_the_clock_jumped_ahead_and_back(
    make_hub: Callable[..., Hub],
) -> None:
    hub = _hub_on_a_wall_clock(make_hub)
    token = hub.grant()  # expires 600 s after `hub.now`: alive again once the clock is back
    _entered_and_secured(hub, token)

    _clock_jumps_ahead_and_back(hub, restart=False)

    _assert_refused(hub, hub.command(token), Reason.TOKEN_EXPIRED)
    assert hub.lock.unlock_calls == 1


def test_a_used_grant_is_refused_after_the_clock_jumped_and_the_hub_restarted(
    make_hub: Callable[..., Hub],
) -> None:
    hub = _hub_on_a_wall_clock(make_hub)
    token = hub.grant()
    _entered_and_secured(hub, token)

    _clock_jumps_ahead_and_back(hub, restart=True)

    _assert_refused(hub, hub.command(token), Reason.TOKEN_EXPIRED)
    assert hub.lock.unlock_calls == 1


def test_an_unlock_for_an_entry_a_lock_ended_is_refused_after_the_clock_jumped(
    make_hub: Callable[..., Hub],
) -> None:
    # The resident's "Lock now" ends the entry before its unlock arrives; the unlock's
    # grant, never used, is still alive when the clock is back.
    hub = _hub_on_a_wall_clock(make_hub)
    unlock = hub.command(hub.grant())
    lock_grant = hub.grant(scope=("lock",))
    locked = hub.send(hub.command(lock_grant, kind=CommandKind.LOCK))
    assert locked is not None and locked.result == "ok"

    _clock_jumps_ahead_and_back(hub, restart=True)

    _assert_refused(hub, unlock, Reason.TOKEN_EXPIRED)
    assert hub.lock.unlock_calls == 0


def test_a_fresh_grant_is_accepted_once_the_clock_is_back(
    make_hub: Callable[..., Hub],
) -> None:
    # Only grants that expire no later than one the hub forgot are refused.
    hub = _hub_on_a_wall_clock(make_hub)
    _entered_and_secured(hub, hub.grant())
    _clock_jumps_ahead_and_back(hub, restart=True)

    command = hub.command(hub.grant(expires=hub.now + 600))  # 10 s after the forgotten one
    hub.send(command)

    reply = hub.stored_reply(command.command_id)
    assert reply is not None and reply.result == "ok"
    assert hub.lock.unlock_calls == 2
