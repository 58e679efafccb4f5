"""Proof of possession at the hub: a grant naming the courier's phone key opens the door
only with that key's signature over the hub's own, fresh challenge for this entry.

A grant taken off the wire (and even a whole unlock command with a proof) is useless to
anyone else: without the key there is no proof; an old proof is over a spent challenge.
The actuator is never reached in any refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from doorstep.hub.agent import CHALLENGE_SECONDS
from doorstep.protocol import Reason, pop
from doorstep.protocol.grants import CLAIM_CNF, GrantSigner
from doorstep.protocol.messages import CommandKind, EventKind, Reply, b64decode, b64encode

if TYPE_CHECKING:
    from conftest import Hub


@pytest.fixture
def phone() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _bound_grant(hub: Hub, phone: ec.EllipticCurvePrivateKey) -> bytes:
    return hub.grant(pop_key=pop.compressed(phone.public_key()))


def _challenge(hub: Hub, grant: bytes) -> bytes:
    reply = hub.send(hub.command(grant, kind=CommandKind.CHALLENGE))
    assert reply is not None and reply.result == "ok" and reply.challenge
    return b64decode(reply.challenge)


def _proof(hub: Hub, key: ec.EllipticCurvePrivateKey, challenge: bytes) -> str:
    audience = f"{hub.hub_id}/{hub.door}"
    return b64encode(pop.sign(key, pop.message(hub.entry_id, audience, challenge)))


def _refused(hub: Hub, reply: Reply | None, reason: Reason) -> None:
    assert reply is not None
    assert (reply.result, reply.reason) == ("refused", reason)
    assert hub.lock.unlock_calls == 0
    assert hub.lock.status().secure


def test_the_phones_signature_of_the_challenge_opens_the_door(
    hub: Hub, phone: ec.EllipticCurvePrivateKey
) -> None:
    grant = _bound_grant(hub, phone)
    assert len(grant) <= 256  # the key rides in the grant, compressed
    challenge = _challenge(hub, grant)
    assert hub.lock.unlock_calls == 0  # a challenge moves nothing
    command = hub.command(grant, proof=_proof(hub, phone, challenge))
    hub.send(command)  # the reply follows the lock's report
    reply = hub.stored_reply(command.command_id)
    assert reply is not None and reply.result == "ok"
    assert hub.lock.unlock_calls == 1
    assert [e.kind for e in hub.events(EventKind.LOCK_UNLOCKED)] == [EventKind.LOCK_UNLOCKED]


def test_a_grant_copied_off_the_wire_without_the_phone_is_refused(
    hub: Hub, phone: ec.EllipticCurvePrivateKey
) -> None:
    grant = _bound_grant(hub, phone)
    _challenge(hub, grant)
    _refused(hub, hub.send(hub.command(grant)), Reason.PROOF_REQUIRED)


def test_a_proof_made_with_another_key_is_refused(
    hub: Hub, phone: ec.EllipticCurvePrivateKey
) -> None:
    grant = _bound_grant(hub, phone)
    challenge = _challenge(hub, grant)
    thief = ec.generate_private_key(ec.SECP256R1())
    reply = hub.send(hub.command(grant, proof=_proof(hub, thief, challenge)))
    _refused(hub, reply, Reason.PROOF_INVALID)
    # The challenge is spent by the failed try: the right phone must ask again.
    retry = hub.send(hub.command(grant, proof=_proof(hub, phone, challenge)))
    _refused(hub, retry, Reason.PROOF_STALE)


def test_a_proof_over_a_stale_challenge_is_refused(
    hub: Hub, phone: ec.EllipticCurvePrivateKey
) -> None:
    grant = _bound_grant(hub, phone)
    old = _challenge(hub, grant)
    _challenge(hub, grant)  # a newer challenge replaces the old one
    # The hub keeps only the live challenge: a signature over any other is simply invalid.
    reply = hub.send(hub.command(grant, proof=_proof(hub, phone, old)))
    _refused(hub, reply, Reason.PROOF_INVALID)


def test_a_proof_for_another_entry_or_a_made_up_challenge_is_refused(
    hub: Hub, phone: ec.EllipticCurvePrivateKey
) -> None:
    grant = _bound_grant(hub, phone)
    _challenge(hub, grant)
    made_up = _proof(hub, phone, b"\x00" * pop.CHALLENGE_BYTES)
    _refused(hub, hub.send(hub.command(grant, proof=made_up)), Reason.PROOF_INVALID)
    challenge = _challenge(hub, grant)
    other_door = b64encode(
        pop.sign(phone, pop.message(hub.entry_id, f"{hub.hub_id}/back", challenge))
    )
    _refused(hub, hub.send(hub.command(grant, proof=other_door)), Reason.PROOF_INVALID)


def test_an_expired_challenge_is_refused(hub: Hub, phone: ec.EllipticCurvePrivateKey) -> None:
    grant = _bound_grant(hub, phone)
    challenge = _challenge(hub, grant)
    # The hub's clock moves past CHALLENGE_SECONDS; the grant (10 minutes) is still valid.
    hub.agent._clock = lambda: hub.now + CHALLENGE_SECONDS + 1
    reply = hub.send(hub.command(grant, not_after=hub.now + 90,
                                 proof=_proof(hub, phone, challenge)))  # fmt: skip
    _refused(hub, reply, Reason.PROOF_STALE)


def test_the_whole_unlock_replayed_after_use_is_refused(
    hub: Hub, phone: ec.EllipticCurvePrivateKey
) -> None:
    grant = _bound_grant(hub, phone)
    command = hub.command(grant, proof=_proof(hub, phone, _challenge(hub, grant)))
    hub.send(command)
    assert hub.stored_reply(command.command_id).result == "ok"  # type: ignore[union-attr]
    hub.lock.open_door()
    hub.lock.close_door()  # the hub relocks and the entry ends
    assert hub.lock.status().secure
    reply = hub.send(hub.command(grant, kind=CommandKind.CHALLENGE))
    assert reply is not None and (reply.result, reply.reason) == ("refused", Reason.TOKEN_REPLAYED)


def test_a_malformed_key_in_the_grant_is_refused(hub: Hub) -> None:
    claims = hub.claims().to_cbor_map()
    claims[CLAIM_CNF] = {1: {1: 2, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32}}  # uncompressed
    signer = GrantSigner(hub.issuer_key)
    token = signer._cose.encode_and_sign(
        cbor2.dumps(claims), signer._key, protected=signer._protected
    )
    reply = hub.send(hub.command(token, kind=CommandKind.CHALLENGE))
    assert reply is not None and (reply.result, reply.reason) == ("refused", Reason.TOKEN_MALFORMED)
    assert hub.lock.unlock_calls == 0
