"""The hub agent refuses every doubtful command without ever reaching the lock actuator.

Each refusal test checks the three things DESIGN principle 1 promises: the reply says
`refused` with the specific reason, the refusal is journalled (and the reply points at
that event), and `SimulatedLock.unlock_calls` is still 0. The agent runs without MQTT;
see conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from doorstep.db import ordered_id
from doorstep.hub.agent import RelockPolicy
from doorstep.hub.drivers.simulated import ManualScheduler
from doorstep.hub.lock import LockState, OperationSource
from doorstep.protocol import Reason
from doorstep.protocol.grants import ALG_EDDSA, GrantSigner
from doorstep.protocol.messages import MAX_MESSAGE_BYTES, CommandKind, EventKind, Reply

if TYPE_CHECKING:
    from conftest import Hub

OTHER_ENTRY = ordered_id("ent")  # as long as ENTRY, so one can stand in for the other


def _sign1(protected: dict[int, Any], payload: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """A hand-built COSE_Sign1 (RFC 9052 4.4), to forge exactly one thing at a time."""
    protected_bytes = cbor2.dumps(protected)
    signature = sign(cbor2.dumps(["Signature1", protected_bytes, b"", payload]))
    return cbor2.dumps(cbor2.CBORTag(18, [protected_bytes, {}, payload, signature]))


def _assert_refused(hub: Hub, reply: Reply | None, reason: Reason) -> None:
    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", reason)
    refusals = [
        event
        for event in hub.events(EventKind.COMMAND_REFUSED)
        if event.data.get("command_id") == reply.command_id
    ]
    assert len(refusals) == 1
    assert refusals[0].data["reason"] == reason
    assert reply.seqs == [refusals[0].seq]
    assert hub.stored_reply(reply.command_id) == reply  # a redelivery gets the same answer
    assert hub.lock.unlock_calls == 0


def _assert_still_locked(hub: Hub) -> None:
    assert hub.lock.status().secure
    unlocked = hub.events(EventKind.LOCK_UNLOCKED)
    assert [event for event in unlocked if event.epoch == hub.journal.epoch] == []


# --- the grant -------------------------------------------------------------------------


def test_grant_signed_by_another_key(hub: Hub) -> None:
    impostor = Ed25519PrivateKey.generate()
    payload = cbor2.dumps(hub.claims().to_cbor_map())
    token = _sign1({1: ALG_EDDSA, 4: hub.signer.kid.encode()}, payload, impostor.sign)

    _assert_refused(hub, hub.send(hub.command(token)), Reason.TOKEN_SIGNATURE)
    _assert_still_locked(hub)


def test_grant_from_an_unknown_issuer(hub: Hub) -> None:
    token = GrantSigner(Ed25519PrivateKey.generate()).sign(hub.claims())

    _assert_refused(hub, hub.send(hub.command(token)), Reason.TOKEN_UNKNOWN_KEY)


def test_expired_grant(hub: Hub) -> None:
    token = hub.grant(not_before=hub.now - 600, expires=hub.now - 31)

    _assert_refused(hub, hub.send(hub.command(token)), Reason.TOKEN_EXPIRED)
    _assert_still_locked(hub)


def test_grant_not_yet_valid(hub: Hub) -> None:
    token = hub.grant(not_before=hub.now + 31)

    _assert_refused(hub, hub.send(hub.command(token)), Reason.TOKEN_NOT_YET_VALID)


def test_grant_for_another_hub(hub: Hub) -> None:
    token = hub.grant(audience="hub-fedcba9876543210/front")

    _assert_refused(hub, hub.send(hub.command(token)), Reason.TOKEN_AUDIENCE)


def test_grant_without_the_unlock_scope(hub: Hub) -> None:
    token = hub.grant(scope=("lock",))

    _assert_refused(hub, hub.send(hub.command(token)), Reason.TOKEN_SCOPE)


def test_tampered_grant(hub: Hub) -> None:
    token = hub.grant(entry_id=OTHER_ENTRY)
    forged = token.replace(OTHER_ENTRY.encode(), hub.entry_id.encode())

    assert forged != token
    _assert_refused(hub, hub.send(hub.command(forged)), Reason.TOKEN_SIGNATURE)


def test_unsigned_grant(hub: Hub) -> None:
    token = cbor2.dumps(cbor2.CBORTag(61, hub.claims().to_cbor_map()))

    _assert_refused(hub, hub.send(hub.command(token)), Reason.TOKEN_ALGORITHM)


def test_grant_with_an_unexpected_algorithm(hub: Hub) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())

    def es256(data: bytes) -> bytes:
        r, s = decode_dss_signature(p256.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    payload = cbor2.dumps(hub.claims().to_cbor_map())
    token = _sign1({1: -7, 4: hub.signer.kid.encode()}, payload, es256)

    _assert_refused(hub, hub.send(hub.command(token)), Reason.TOKEN_ALGORITHM)


@pytest.mark.parametrize("grant", [None, "", "not base64!", "A"], ids=repr)
def test_missing_or_undecodable_grant(hub: Hub, grant: str | None) -> None:
    command = hub.command(None).model_copy(update={"grant": grant})

    _assert_refused(hub, hub.send(command), Reason.TOKEN_MALFORMED)


# --- single use --------------------------------------------------------------------


def _complete_entry(hub: Hub) -> None:
    hub.lock.open_door()
    hub.lock.close_door()  # the agent relocks; the entry is secured
    assert len(hub.events(EventKind.ENTRY_SECURED)) == 1


def test_grant_used_twice(hub: Hub) -> None:
    token = hub.grant()
    first = hub.command(token)
    hub.send(first)
    assert hub.stored_reply(first.command_id) == Reply(
        command_id=first.command_id, result="ok", seqs=[hub.events()[0].seq]
    )
    assert hub.lock.unlock_calls == 1
    _complete_entry(hub)

    second = hub.command(token)  # a new command id, the same grant
    reply = hub.send(second)

    assert second.command_id != first.command_id
    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", Reason.TOKEN_REPLAYED)
    assert hub.lock.unlock_calls == 1
    assert hub.lock.status().secure


def test_grant_used_before_the_hub_restarted(hub: Hub) -> None:
    token = hub.grant()
    hub.send(hub.command(token))
    assert hub.lock.unlock_calls == 1
    # Finish the entry: an entry still open survives the restart and would refuse any
    # second unlock on its own (entry_in_progress) before the token is even looked at.
    hub.lock.open_door()
    hub.lock.close_door()
    epoch = hub.journal.epoch

    hub.restart()
    reply = hub.send(hub.command(token))

    assert hub.journal.epoch == epoch + 1
    _assert_refused(hub, reply, Reason.TOKEN_REPLAYED)
    _assert_still_locked(hub)


def test_redelivered_command_after_restart_is_answered_not_executed(hub: Hub) -> None:
    command = hub.command(hub.grant())
    hub.send(command)
    answer = hub.stored_reply(command.command_id)

    hub.restart()
    reply = hub.send(command)

    assert answer is not None and answer.result == "ok"
    assert reply == answer
    assert hub.lock.unlock_calls == 0


def test_refusal_before_the_token_check_does_not_use_up_the_grant(hub: Hub) -> None:
    token = hub.grant()
    hub.lock.open_door()
    refused = hub.send(hub.command(token))
    hub.lock.close_door()

    hub.send(retry := hub.command(token))

    assert refused is not None and refused.reason == Reason.DOOR_OPEN
    assert (reply := hub.stored_reply(retry.command_id)) is not None
    assert reply.result == "ok"
    assert hub.lock.unlock_calls == 1


# --- the command -------------------------------------------------------------------


def test_command_past_not_after(hub: Hub) -> None:
    command = hub.command(hub.grant(), not_after=hub.now - 1)

    _assert_refused(hub, hub.send(command), Reason.COMMAND_EXPIRED)
    _assert_still_locked(hub)


def test_unsupported_protocol_version(hub: Hub) -> None:
    _assert_refused(hub, hub.send(hub.command(hub.grant(), v=2)), Reason.UNSUPPORTED_VERSION)


def test_lock_command_with_an_unlock_grant(hub: Hub) -> None:
    # Locking takes a grant of its own (scope "lock", test_agent_lock.py).
    command = hub.command(hub.grant(), kind=CommandKind.LOCK)

    _assert_refused(hub, hub.send(command), Reason.TOKEN_SCOPE)


def test_grant_for_entry_a_in_a_command_for_entry_b(hub: Hub) -> None:
    command = hub.command(hub.grant(), entry_id=OTHER_ENTRY)

    _assert_refused(hub, hub.send(command), Reason.TOKEN_ENTRY_MISMATCH)
    _assert_still_locked(hub)


def test_grant_for_one_door_in_a_command_for_another(hub: Hub) -> None:
    command = hub.command(hub.grant(), access_point="garage")

    _assert_refused(hub, hub.send(command), Reason.TOKEN_ENTRY_MISMATCH)


def test_grant_for_an_unknown_access_point(hub: Hub) -> None:
    token = hub.grant(audience=f"{hub.hub_id}/garage")

    _assert_refused(hub, hub.send(hub.command(token, access_point="garage")), Reason.TOKEN_AUDIENCE)
    _assert_still_locked(hub)


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"[]", b'{"v": 1}', b"\xff" * 10, b" " * (MAX_MESSAGE_BYTES + 1)],
    ids=["not-json", "array", "missing-fields", "binary", "oversized"],
)
def test_malformed_payload_is_journalled_and_ignored(hub: Hub, payload: bytes) -> None:
    assert hub.agent.handle_command(payload) is None

    assert [event.data for event in hub.events()] == [{"reason": Reason.BAD_MESSAGE}]
    assert [event.kind for event in hub.events()] == [EventKind.COMMAND_REFUSED]
    assert hub.lock.unlock_calls == 0


def test_unknown_field_in_a_command_is_a_bad_message(hub: Hub) -> None:
    body = hub.command(hub.grant()).model_dump(mode="json") | {"force": True}

    assert hub.agent.handle_command(json.dumps(body).encode()) is None
    assert hub.events(EventKind.COMMAND_REFUSED)[0].data == {"reason": Reason.BAD_MESSAGE}
    assert hub.lock.unlock_calls == 0


# --- the lock ----------------------------------------------------------------------


def test_lock_jammed(hub: Hub) -> None:
    hub.lock.inject_jam(True)
    hub.lock.lock(OperationSource.MANUAL)  # the motor stalls: the bolt is half-thrown
    assert hub.lock.status().jammed

    _assert_refused(hub, hub.send(hub.command(hub.grant())), Reason.LOCK_JAMMED)


def test_door_open(hub: Hub) -> None:
    hub.lock.open_door()

    _assert_refused(hub, hub.send(hub.command(hub.grant())), Reason.DOOR_OPEN)
    assert hub.lock.status().lock_state == LockState.LOCKED


def test_bolt_already_unlocked(hub: Hub) -> None:
    hub.lock.manual_unlock()

    _assert_refused(hub, hub.send(hub.command(hub.grant())), Reason.DOOR_OPEN)


def test_lock_offline_is_refused_before_the_driver_is_called(hub: Hub) -> None:
    # The agent reads status() first, so a lock known to be offline is never asked to
    # move: unlock_calls stays 0 (SimulatedLock counts refused calls too).
    hub.lock.set_online(False)

    _assert_refused(hub, hub.send(hub.command(hub.grant())), Reason.LOCK_NOT_READY)


def test_flat_battery_fails_the_unlock_and_the_door_stays_locked(hub: Hub) -> None:
    hub.lock.set_battery(0)
    command = hub.command(hub.grant())

    assert hub.send(command) is None  # the answer comes from the lock's report

    reply = hub.stored_reply(command.command_id)
    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", Reason.ACTUATOR_FAILED)
    assert reply.seqs == [hub.events(EventKind.LOCK_ERROR)[0].seq]
    assert hub.lock.actuations == 0
    assert hub.lock.status().secure
    assert hub.journal.visits() == []  # nothing for a restart to resume


# --- redelivery and the happy path -------------------------------------------------


def test_redelivered_command_is_answered_without_acting_twice(hub: Hub) -> None:
    command = hub.command(hub.grant())
    hub.send(command)
    events_before = hub.events()

    reply = hub.send(command)

    assert reply == hub.stored_reply(command.command_id)
    assert reply is not None and reply.result == "ok"
    assert hub.lock.unlock_calls == 1
    assert hub.lock.actuations == 1
    assert hub.events() == events_before


def test_redelivered_refusal_is_answered_from_the_journal(hub: Hub) -> None:
    command = hub.command(hub.grant(), not_after=hub.now - 1)
    first = hub.send(command)

    assert hub.send(command) == first
    assert len(hub.events(EventKind.COMMAND_REFUSED)) == 1


def test_reply_ok_follows_the_lock_report(make_hub: Callable[..., Hub]) -> None:
    motor = ManualScheduler()
    hub = make_hub(scheduler=motor, motor_seconds=1.0)
    command = hub.command(hub.grant())

    assert hub.send(command) is None
    assert hub.stored_reply(command.command_id) is None  # the bolt is still moving
    assert hub.events() == []

    motor.advance(1.0)

    [unlocked] = hub.events()
    assert unlocked.kind == EventKind.LOCK_UNLOCKED
    assert unlocked.data == {"access_point": hub.door, "entry_id": hub.entry_id, "source": 7}
    assert hub.stored_reply(command.command_id) == Reply(
        command_id=command.command_id, result="ok", seqs=[unlocked.seq]
    )
    assert hub.lock.unlock_calls == 1


def test_door_closing_relocks_and_secures_the_entry(hub: Hub) -> None:
    hub.send(hub.command(hub.grant()))
    hub.lock.open_door()
    hub.lock.close_door()

    kinds = [event.kind for event in hub.events()]
    assert kinds == [
        EventKind.LOCK_UNLOCKED,
        EventKind.DOOR_OPENED,
        EventKind.DOOR_CLOSED,
        EventKind.LOCK_LOCKED,
        EventKind.ENTRY_SECURED,
    ]
    assert all(event.data["entry_id"] == hub.entry_id for event in hub.events())
    assert hub.lock.lock_calls == 1
    assert hub.lock.status().secure


def test_entry_is_secured_only_when_locked_and_closed(hub: Hub) -> None:
    hub.send(hub.command(hub.grant()))
    hub.lock.open_door()
    hub.lock.manual_lock()  # a thumb-turn with the door open: locked, not secure
    assert hub.events(EventKind.LOCK_LOCKED) != []
    assert hub.events(EventKind.ENTRY_SECURED) == []

    hub.lock.close_door()

    assert len(hub.events(EventKind.ENTRY_SECURED)) == 1
    assert hub.lock.lock_calls == 0  # already locked: nothing to relock


def test_jam_on_relock_does_not_secure_the_entry(hub: Hub) -> None:
    hub.send(hub.command(hub.grant()))
    hub.lock.open_door()
    hub.lock.inject_jam(True)
    hub.lock.close_door()

    assert hub.lock.lock_calls == 1
    assert hub.events(EventKind.LOCK_JAMMED) != []
    assert hub.events(EventKind.LOCK_ERROR) != []
    assert hub.events(EventKind.ENTRY_SECURED) == []
    assert hub.lock.status().lock_state == LockState.NOT_FULLY_LOCKED

    hub.lock.inject_jam(False)
    hub.lock.manual_lock()  # someone turns the bolt home by hand: now it is verified

    assert len(hub.events(EventKind.ENTRY_SECURED)) == 1


# --- bugs found and fixed in hub/agent.py: keep them fixed ---------------------------


def test_redelivery_while_the_bolt_moves_is_not_refused(make_hub: Callable[..., Hub]) -> None:
    motor = ManualScheduler()
    hub = make_hub(scheduler=motor, motor_seconds=1.0)
    command = hub.command(hub.grant())
    hub.send(command)

    redelivered = hub.send(command)  # QoS 1 redelivery, before the lock has reported
    motor.advance(1.0)

    assert redelivered is None or redelivered.result == "ok"
    assert hub.events(EventKind.COMMAND_REFUSED) == []


def test_second_entry_while_the_bolt_moves_is_refused(make_hub: Callable[..., Hub]) -> None:
    motor = ManualScheduler()
    hub = make_hub(scheduler=motor, motor_seconds=1.0)
    first = hub.command(hub.grant())
    hub.send(first)
    hub.send(hub.command(hub.grant(entry_id=OTHER_ENTRY), entry_id=OTHER_ENTRY))
    motor.advance(1.0)
    hub.lock.open_door()
    hub.lock.close_door()
    motor.advance(1.0)  # the relock, if the hub still knows about the first entry

    assert (reply := hub.stored_reply(first.command_id)) is not None and reply.result == "ok"
    assert hub.lock.status().secure  # the door was relocked when it closed


def test_a_refused_button_press_while_the_bolt_moves_is_not_the_answer(
    make_hub: Callable[..., Hub],
) -> None:
    motor = ManualScheduler()
    hub = make_hub(scheduler=motor, motor_seconds=1.0, auto_relock_seconds=None)
    command = hub.command(hub.grant())
    hub.send(command)
    hub.lock.unlock(OperationSource.BUTTON)  # the lock's button: refused, the motor is busy
    assert hub.stored_reply(command.command_id) is None

    motor.advance(1.0)

    assert (reply := hub.stored_reply(command.command_id)) is not None and reply.result == "ok"
    hub.lock.open_door()
    hub.lock.close_door()
    motor.advance(1.0)
    assert hub.lock.status().secure  # the entry was kept: relocked when the door closed
    assert len(hub.events(EventKind.ENTRY_SECURED)) == 1


def test_a_thumb_turn_while_the_bolt_moves_is_not_the_answer(
    make_hub: Callable[..., Hub],
) -> None:
    motor = ManualScheduler()
    hub = make_hub(scheduler=motor, motor_seconds=1.0)
    command = hub.command(hub.grant())
    hub.send(command)
    hub.lock.manual_unlock()
    assert hub.stored_reply(command.command_id) is None

    motor.advance(1.0)

    unlocks = hub.events(EventKind.LOCK_UNLOCKED)
    remote = [e for e in unlocks if e.data["source"] == OperationSource.REMOTE]
    assert hub.stored_reply(command.command_id) == Reply(
        command_id=command.command_id, result="ok", seqs=[remote[0].seq]
    )


def test_a_door_flicker_while_the_bolt_moves_does_not_end_the_entry(
    make_hub: Callable[..., Hub],
) -> None:
    motor = ManualScheduler()
    hub = make_hub(scheduler=motor, motor_seconds=1.0, auto_relock_seconds=None)
    command = hub.command(hub.grant())
    hub.send(command)
    hub.lock.open_door()  # the courier tugs the handle: the sensor opens and closes
    hub.lock.close_door()

    motor.advance(1.0)

    assert (reply := hub.stored_reply(command.command_id)) is not None and reply.result == "ok"
    assert hub.events(EventKind.ENTRY_SECURED) == []
    assert [visit[1] for visit in hub.journal.visits()] == [hub.entry_id]
    motor.advance(RelockPolicy().unopened_seconds + 1.0)  # nobody opens it again
    assert hub.lock.status().secure
    assert len(hub.events(EventKind.ENTRY_SECURED)) == 1


def test_an_unlock_that_jams_half_way_is_refused_and_relocked(
    make_hub: Callable[..., Hub],
) -> None:
    motor = ManualScheduler()
    hub = make_hub(scheduler=motor, auto_relock_seconds=None)
    hub.lock.inject_jam(True)
    command = hub.command(hub.grant())
    hub.send(command)
    reply = hub.stored_reply(command.command_id)
    assert reply is not None and reply.reason == Reason.ACTUATOR_FAILED
    assert hub.lock.status().lock_state == LockState.NOT_FULLY_LOCKED

    hub.lock.inject_jam(False)
    motor.advance(RelockPolicy().retry_seconds)

    assert hub.lock.status().secure
    secured = hub.events(EventKind.ENTRY_SECURED)
    assert [(e.data["entry_id"], e.data["opened"]) for e in secured] == [(hub.entry_id, False)]
