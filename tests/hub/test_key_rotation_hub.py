"""Issuer key rotation at the hub: the signed desired document names the keys it trusts.

A hub built as `doorstep hub` builds it (`hub.runner.build`, from a data directory with its
hub.json), without MQTT: desired documents go to `CredentialManager.apply`, commands to
`HubAgent.handle_command`, as the agent's message loop would hand them over. What a user
relies on: once the hub applies a document naming new keys, grants signed by them open
the door; once a key is left out, its grants are refused (`token_unknown_key`) and the
lock is never called; that holds across a restart; a document signed by a key the hub
does not trust, one that leaves out its own signing key, and an older one replayed
change nothing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.db import ordered_id
from doorstep.hub import config as hub_config
from doorstep.hub.agent import HubAgent
from doorstep.hub.config import HubConfig
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.runner import HubOptions, build
from doorstep.hub.simcontrol import SimControl
from doorstep.protocol import PROTOCOL_VERSION
from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import (
    GrantClaims,
    GrantSigner,
    audience_for,
    key_id_for,
    new_token_id,
    public_key_bytes,
)
from doorstep.protocol.messages import (
    Command,
    CommandKind,
    EventKind,
    Reply,
    b64encode,
    canonical,
)
from doorstep.protocol.mqtt import BrokerAddress
from doorstep.protocol.shadow import sign_shadow
from polling import wait_until

HUB_ID = "hub-00112233445566ff"
DOOR = "front"
_commands = itertools.count()


def kid(key: Ed25519PrivateKey) -> str:
    return key_id_for(key.public_key())


def named(*keys: Ed25519PrivateKey) -> dict[str, str]:
    return {kid(key): b64encode(public_key_bytes(key.public_key())) for key in keys}


def document(version: int, signed_by: Ed25519PrivateKey, keys: Mapping[str, str] | None) -> bytes:
    fields: dict[str, Any] = {
        "hub": HUB_ID,
        "version": version,
        "issued_at": int(time.time()),
        "timezone": "Europe/Paris",
    }
    if keys is not None:
        fields["issuer_keys"] = dict(keys)
    return sign_shadow(fields, signed_by, kid(signed_by))


def hand_signed(version: int, signed_by: Ed25519PrivateKey, keys: Mapping[str, str]) -> bytes:
    """A document signed without `sign_shadow`'s checks (which would not sign this one)."""
    body = {
        "v": 1,
        "hub": HUB_ID,
        "version": version,
        "issued_at": int(time.time()),
        "timezone": "Europe/Paris",
        "credentials": [],
        "revoked_tokens": [],
        "issuer_keys": dict(keys),
        "kid": kid(signed_by),
    }
    signature = signed_by.sign(canonical(body))
    return canonical({**body, "sig": b64encode(signature)})


class Hub:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.agent: HubAgent
        self.control: SimControl
        self.boot()

    def boot(self) -> None:
        self.agent, _config, self.control = build(HubOptions(data_dir=self.data_dir))
        self.control.start()

    def restart(self) -> None:
        self.stop()
        self.boot()

    def stop(self) -> None:
        self.control.stop()
        self.agent.stop()

    @property
    def lock(self) -> SimulatedLock:
        lock = self.agent.locks[DOOR]
        assert isinstance(lock, SimulatedLock)
        return lock

    def apply(self, payload: bytes) -> bool:
        """Whether the hub applied the document."""
        assert self.agent.credentials is not None
        return self.agent.credentials.apply(payload) is not None

    def unlock(self, signed_by: Ed25519PrivateKey) -> Reply:
        now = int(time.time())
        entry = ordered_id("ent")
        claims = GrantClaims(
            audience=audience_for(HUB_ID, DOOR),
            not_before=now,
            expires=now + 600,
            issued_at=now,
            token_id=new_token_id(),
            scope=("unlock",),
            entry_id=entry,
        )
        command = Command(
            v=PROTOCOL_VERSION,
            command_id=f"cmd-{next(_commands):08d}",
            kind=CommandKind.UNLOCK,
            not_after=now + 30,
            entry_id=entry,
            access_point=DOOR,
            grant=b64encode(GrantSigner(signed_by).sign(claims)),
        )
        refused = self.agent.handle_command(command.model_dump_json().encode())
        if refused is not None:
            return refused
        # Unlocking: the reply follows the lock's own report of the bolt.
        body = wait_until(
            lambda: self.agent.journal.command_reply(command.command_id), 5, "the reply"
        )
        return Reply.model_validate_json(body)

    def refusals(self) -> list[str]:
        events = self.agent.journal.unacknowledged(limit=10_000)
        return [e.data["reason"] for e in events if e.kind == EventKind.SHADOW_REFUSED]


@pytest.fixture
def enrolled_with() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def hub(tmp_path: Path, enrolled_with: Ed25519PrivateKey) -> Iterator[Hub]:
    """A hub whose hub.json pins `enrolled_with`, as the enrollment answer would."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir(mode=0o700)
    config = HubConfig(
        hub_id=HUB_ID,
        home_id="hom-1",
        broker=BrokerAddress("127.0.0.1", 1, HUB_ID, "unused"),
        issuer_keys={kid(enrolled_with): public_key_bytes(enrolled_with.public_key())},
        access_points=(DOOR,),
    )
    (data_dir / "hub.json").write_bytes(config.to_json())
    rig = Hub(data_dir)
    yield rig
    rig.stop()


def test_a_document_naming_a_new_key_makes_its_grants_open(
    hub: Hub, enrolled_with: Ed25519PrivateKey
) -> None:
    new = Ed25519PrivateKey.generate()
    assert hub.unlock(new).reason == Reason.TOKEN_UNKNOWN_KEY  # not trusted yet

    assert hub.apply(document(1, enrolled_with, named(enrolled_with, new)))

    assert hub.unlock(new).result == "ok"
    assert hub.lock.unlock_calls == 1


def test_a_key_left_out_is_refused_and_the_lock_never_called(
    hub: Hub, enrolled_with: Ed25519PrivateKey
) -> None:
    new = Ed25519PrivateKey.generate()
    assert hub.apply(document(1, enrolled_with, named(enrolled_with, new)))
    assert hub.apply(document(2, new, named(new)))  # the old key retired

    reply = hub.unlock(enrolled_with)

    assert reply.result == "refused" and reply.reason == Reason.TOKEN_UNKNOWN_KEY
    assert hub.lock.unlock_calls == 0
    assert not hub.apply(document(3, enrolled_with, named(enrolled_with)))
    assert hub.refusals()[-1] == Reason.SHADOW_UNKNOWN_KEY


def test_the_trusted_keys_survive_a_restart(hub: Hub, enrolled_with: Ed25519PrivateKey) -> None:
    new = Ed25519PrivateKey.generate()
    assert hub.apply(document(1, enrolled_with, named(enrolled_with, new)))
    assert hub.apply(document(2, new, named(new)))

    hub.restart()  # hub.json still pins the enrollment key alone

    refused = hub.unlock(enrolled_with)
    assert refused.result == "refused" and refused.reason == Reason.TOKEN_UNKNOWN_KEY
    assert hub.lock.unlock_calls == 0
    assert hub.unlock(new).result == "ok"
    assert hub.apply(document(3, new, named(new)))  # documents too: the new key's


def test_an_older_document_replayed_cannot_bring_a_retired_key_back(
    hub: Hub, enrolled_with: Ed25519PrivateKey
) -> None:
    new = Ed25519PrivateKey.generate()
    # Signed by a key the hub still trusts, and naming the one retired after it.
    both = document(2, new, named(enrolled_with, new))
    assert hub.apply(document(1, enrolled_with, named(enrolled_with, new)))
    assert hub.apply(document(3, new, named(new)))

    assert not hub.apply(both)
    hub.restart()
    assert not hub.apply(both)

    assert hub.refusals()[-2:] == [Reason.SHADOW_STALE, Reason.SHADOW_STALE]
    reply = hub.unlock(enrolled_with)
    assert reply.result == "refused" and reply.reason == Reason.TOKEN_UNKNOWN_KEY
    assert hub.lock.unlock_calls == 0


def test_a_document_signed_by_an_untrusted_key_cannot_add_keys(
    hub: Hub, enrolled_with: Ed25519PrivateKey
) -> None:
    intruder = Ed25519PrivateKey.generate()

    assert not hub.apply(document(5, intruder, named(enrolled_with, intruder)))

    assert hub.refusals() == [Reason.SHADOW_UNKNOWN_KEY]
    assert hub.unlock(intruder).reason == Reason.TOKEN_UNKNOWN_KEY
    assert hub.lock.unlock_calls == 0
    # A document the hub trusts still names keys (version 1: nothing else was applied).
    other = Ed25519PrivateKey.generate()
    assert hub.apply(document(1, enrolled_with, named(enrolled_with, other)))
    assert hub.unlock(intruder).reason == Reason.TOKEN_UNKNOWN_KEY
    assert hub.unlock(other).result == "ok"


@pytest.mark.parametrize("forged", ["left_out", "other_bytes"])
def test_a_document_that_leaves_out_its_own_signing_key_is_refused(
    hub: Hub, enrolled_with: Ed25519PrivateKey, forged: str
) -> None:
    new = Ed25519PrivateKey.generate()
    # Left out, or its kid with another key's bytes.
    keys = named(new) if forged == "left_out" else {kid(enrolled_with): named(new)[kid(new)]}

    assert not hub.apply(hand_signed(1, enrolled_with, keys))

    assert hub.refusals() == [Reason.SHADOW_MALFORMED]
    assert not (hub.data_dir / hub_config.TRUSTED_KEYS_FILE).exists()
    assert hub.unlock(new).reason == Reason.TOKEN_UNKNOWN_KEY
    # Version 1 was not applied: the same version, naming its signer, is.
    assert hub.apply(document(1, enrolled_with, named(enrolled_with, new)))
    assert hub.unlock(enrolled_with).result == "ok"


def test_a_document_without_issuer_keys_keeps_the_hub_s_keys(
    hub: Hub, enrolled_with: Ed25519PrivateKey
) -> None:
    """A service of the previous release sends no `issuer_keys`."""
    new = Ed25519PrivateKey.generate()
    assert hub.apply(document(1, enrolled_with, named(enrolled_with, new)))

    assert hub.apply(document(2, enrolled_with, None))

    assert hub.unlock(new).result == "ok"
