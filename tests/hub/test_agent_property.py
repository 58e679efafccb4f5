"""Property-based tests of the hub's command path (attacks-and-faults rows 2, 9 and 10):
a mutated grant is never accepted unless what the issuer signed is unchanged, a malformed
or altered command never reaches the actuator, and no input makes the hub raise.

Hypothesis generates the inputs; the simulated lock's actuator counter is the ground
truth. `HYPOTHESIS_PROFILE=thorough` runs twenty times as many examples as CI does.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cbor2
import orjson
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from doorstep.protocol import PROTOCOL_VERSION
from doorstep.protocol.grants import GrantRefused
from doorstep.protocol.messages import CommandKind, b64decode

if TYPE_CHECKING:
    from conftest import Hub

T = 1_800_000_000  # conftest's frozen clock

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# One hub serves every example of a test: it must never move its bolt, so the examples
# cannot disturb one another (and a forgery that got through once would show at the end).
SHARED_HUB = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- byte mutations ----------------------------------------------------------------------

Mutation = tuple[str, int, int, bytes]

mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "delete", "insert", "truncate"]),
        st.integers(min_value=0, max_value=1 << 16),
        st.integers(min_value=0, max_value=255),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=3,
)


def _mutate(data: bytes, steps: list[Mutation]) -> bytes:
    out = bytearray(data)
    for kind, position, value, extra in steps:
        at = position % (len(out) + 1)
        if kind == "flip" and out:
            out[at % len(out)] ^= 1 << (value % 8)
        elif kind == "set" and out:
            out[at % len(out)] = value
        elif kind == "delete":
            del out[at : at + 1 + value % 8]
        elif kind == "insert":
            out[at:at] = extra
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


def _signed_parts(token: bytes) -> tuple[bytes, bytes, bytes] | None:
    """The protected header, payload and signature a COSE_Sign1 carries (what the signature
    covers, and the signature), or None when the bytes are not one."""
    if token[:2] == b"\xd8\x3d":
        token = token[2:]
    try:
        item = cbor2.CBORDecoder(io.BytesIO(token)).decode()
    except Exception:
        return None
    if not isinstance(item, cbor2.CBORTag) or not isinstance(item.value, list):
        return None
    if len(item.value) != 4:
        return None
    protected, _unprotected, payload, signature = item.value
    if not all(isinstance(part, bytes) for part in (protected, payload, signature)):
        return None
    return protected, payload, signature


# --- the grant ---------------------------------------------------------------------------


@SHARED_HUB
@given(steps=mutations)
def test_a_mutated_grant_verifies_only_if_what_was_signed_is_unchanged(
    hub: Hub, steps: list[Mutation]
) -> None:
    """The verifier alone, many times over: every mutation is refused with a reason, or
    (a re-encoding of the unsigned parts: the unprotected header, the CWT tag) leaves the
    signed bytes as the issuer signed them. Nothing else escapes it."""
    original = hub.grant()
    mutated = _mutate(original, steps)
    assume(mutated != original)
    try:
        hub.agent._verifier.verify(mutated, required_scope="unlock")
    except GrantRefused:
        return
    assert _signed_parts(mutated) == _signed_parts(original)


@SHARED_HUB
@given(steps=mutations)
def test_a_mutated_grant_never_moves_the_bolt(hub: Hub, steps: list[Mutation]) -> None:
    original = hub.grant()
    mutated = _mutate(original, steps)
    signed = _signed_parts(mutated)
    assume(signed is None or signed != _signed_parts(original))

    reply = hub.send(hub.command(mutated))

    assert reply is not None
    assert (reply.result, reply.reason is not None) == ("refused", True)
    assert hub.lock.unlock_calls == 0
    assert hub.lock.status().secure


# --- the command around it ---------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)


def _json(value: object) -> bytes:
    """JSON as any publisher might write it: integers past 64 bits, Infinity."""
    return json.dumps(value).encode()


COMMAND_FIELDS = ["v", "command_id", "kind", "not_after", "entry_id", "access_point", "grant"]


def _fields(hub: Hub, token: bytes) -> dict[str, Any]:
    command = hub.command(token)
    return orjson.loads(command.model_dump_json())  # type: ignore[no-any-return]


def _decoded(grant: object) -> bytes | None:
    try:
        return b64decode(grant) if isinstance(grant, str) else None
    except ValueError:
        return None


def _would_unlock(hub: Hub, fields: dict[str, Any], token: bytes) -> bool:
    """What the hub may do with these fields: unlock only for a command that is, in every
    field the hub reads, the valid one it was built from (the command id is free)."""
    return (
        type(fields.get("v")) is int
        and fields["v"] == PROTOCOL_VERSION
        and fields.get("kind") == CommandKind.UNLOCK.value
        and fields.get("entry_id") == hub.entry_id
        and fields.get("access_point") == hub.door
        and type(fields.get("not_after")) is int
        and fields["not_after"] >= hub.now
        and _decoded(fields.get("grant")) == token
        and isinstance(fields.get("command_id"), str)
        and 8 <= len(fields["command_id"]) <= 64
    )


@given(
    changes=st.dictionaries(
        st.sampled_from([*COMMAND_FIELDS, "extra"]), json_values, min_size=1, max_size=3
    ),
    dropped=st.sets(st.sampled_from(COMMAND_FIELDS), max_size=2),
)
# Found by the thorough profile: the wire was parsed laxly, so `true` was version 1.
@example(changes={"v": True}, dropped=set())
@example(changes={"not_after": str(T + 30)}, dropped=set())
@example(changes={"not_after": float(T + 30)}, dropped=set())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_altered_command_unlocks_only_if_it_is_still_the_valid_one(
    make_hub: Callable[..., Hub], changes: dict[str, Any], dropped: set[str]
) -> None:
    """Fields replaced by any JSON value, or left out, around a valid grant: the hub
    answers without raising, and the bolt moves only if every field it checks is still
    right (a fresh hub each time, since a valid command does open the door)."""
    hub = make_hub()
    token = hub.grant()
    fields = {**_fields(hub, token), **changes}
    for name in dropped:
        fields.pop(name, None)

    hub.agent.handle_command(_json(fields))

    assert hub.lock.unlock_calls <= 1
    if hub.lock.unlock_calls:
        assert _would_unlock(hub, fields, token), fields


@SHARED_HUB
@given(payload=st.binary(max_size=600) | json_values.map(_json))
def test_any_bytes_on_the_command_topic_are_answered_without_raising(
    hub: Hub, payload: bytes
) -> None:
    hub.agent.handle_command(payload)

    assert hub.lock.unlock_calls == 0


@SHARED_HUB
@given(steps=mutations)
def test_a_mutated_command_with_an_expired_grant_never_moves_the_bolt(
    hub: Hub, steps: list[Mutation]
) -> None:
    """Byte mutations anywhere in a whole command whose grant has expired: no mutation
    can make it valid (the expiry is signed), so none may move the bolt or make the hub
    raise."""
    token = hub.grant(not_before=hub.now - 600, expires=hub.now - 60)
    payload = hub.command(token).model_dump_json().encode()

    hub.agent.handle_command(_mutate(payload, steps))

    assert hub.lock.unlock_calls == 0


def test_the_oracle_sees_a_changed_signature_or_payload(hub: Hub) -> None:
    """`_signed_parts`, which decides whether an accepted mutation was harmless, tells a
    re-wrapped grant from a changed one."""
    token = hub.grant()
    parts = _signed_parts(token)
    assert parts is not None
    assert _signed_parts(b"\xd8\x3d" + token) == parts  # the CWT tag is not signed
    assert _signed_parts(token[:-1] + bytes([token[-1] ^ 1])) != parts  # the signature
    payload = parts[1]
    at = token.index(payload) + len(payload) // 2
    assert _signed_parts(token[:at] + bytes([token[at] ^ 1]) + token[at + 1 :]) != parts
