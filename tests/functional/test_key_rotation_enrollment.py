"""A hub enrolling while the running service takes up changed issuer keys
(`grants.rotation.KeyWatch`) ends up with them either way: handed them in its enrollment
answer, or sent a desired document that names them. The service counts it as trusting a
key (`doorstep keys list`, and so `keys use`) only once it was sent that key.

The race is PostgreSQL's (READ COMMITTED: the raise of versions does not see a claim not
committed yet); on SQLite the claim's transaction holds the write lock, which the raise
waits for. The tests force the worst moment on both: the keys change right after the
enrollment read them.

The service here is the app without its background tasks: the test looks at the keys
directory itself (`KeyWatch.look`), at the moment it chooses, and the hubs' documents go
to a list instead of the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, ItemsView, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import Engine

from doorstep.access import keys as issuer_keys
from doorstep.accounts.models import PrincipalKind, Role
from doorstep.accounts.service import Principal, create_user
from doorstep.app import create_app
from doorstep.cli.main import cli
from doorstep.clock import SystemClock
from doorstep.deps import Runtime
from doorstep.grants import rotation
from doorstep.grants.shadow import ShadowPublisher, apply_reported
from doorstep.homes import service as homes
from doorstep.permissions import PrincipalRole
from doorstep.protocol.grants import public_key_bytes
from doorstep.protocol.messages import b64decode, b64encode
from doorstep.protocol.shadow import ReportedDocument, verify_shadow
from doorstep.settings import Settings
from doorstep.sql import Writer
from polling import wait_until
from postgres import committed

TIMEOUT = 10


@dataclass
class Service:
    app: FastAPI
    runtime: Runtime
    settings: Settings
    engine: Engine
    watch: rotation.KeyWatch
    sent: list[tuple[str, bytes]]  # (hub id, desired document), as published

    @property
    def keys_dir(self) -> Path:
        return self.settings.data_dir / "keys"

    def look(self) -> None:
        """The service looks at its keys directory (as it does every second)."""
        asyncio.run(self.watch.look())

    def keys(self, *args: str) -> Result:
        where = ["--data-dir", str(self.settings.data_dir)]
        where += ["--database-url", self.settings.database_url or ""]
        return CliRunner().invoke(cli, ["keys", args[0], *where, *args[1:]])

    def trusted_by(self, kid: str) -> str:
        """`doorstep keys list`'s word on `kid`: "trusted by N of M hubs"."""
        result = self.keys("list")
        assert result.exit_code == 0, result.output
        line = next(line for line in result.output.splitlines() if line.startswith(kid))
        return line[line.index("trusted by") :]

    def documents_for(self, hub_id: str) -> list[bytes]:
        return [payload for hub, payload in self.sent if hub == hub_id]


@pytest.fixture
def service(tmp_path: Path, migrated_engine: Engine, database_url: str) -> Iterator[Service]:
    settings = Settings(data_dir=tmp_path / "service", database_url=database_url)
    app = create_app(settings, broker=None, clock=SystemClock())
    runtime: Runtime = app.state.runtime
    rotation.publish(runtime, settings.data_dir / "keys")  # as `serve` does when it starts
    writer = Writer(migrated_engine)
    writer.start()
    sent: list[tuple[str, bytes]] = []
    runtime.shadows = ShadowPublisher(
        writer,
        runtime.keys.signer,
        runtime.clock,
        lambda hub_id, payload: sent.append((hub_id, payload)),
        issuer_keys=runtime.keys.public,
    )
    watch = rotation.KeyWatch(runtime, settings.data_dir / "keys")
    live = Service(app, runtime, settings, migrated_engine, watch, sent)
    live.look()  # the first look: nothing changed
    yield live
    writer.stop()
    runtime.sessions.kw["bind"].dispose()  # the app's engine (its lifespan would close it)


def _hub_to_claim(service: Service) -> str:
    """A home with a hub not enrolled yet; the hub's claim code."""
    now = service.runtime.clock.now()
    with service.runtime.sessions() as session:
        owner = create_user(session, email="owner@example.org", name="Owner",
                            password="a long enough password", role=Role.RESIDENT,
                            now=now)  # fmt: skip
        principal = Principal(PrincipalKind.USER, owner.id, PrincipalRole.RESIDENT)
        home = homes.create_home(
            session,
            owner=principal,
            data=homes.NewHome("Home", "Street 1", 52.0, 4.0, "UTC"),
            now=now,
        )
        claim = homes.create_hub(
            session, owner=principal, home_id=home.id, now=now, claim_ttl=timedelta(hours=1)
        )
        session.commit()
        return claim.claim_code


def _enroll(service: Service, code: str) -> dict[str, Any]:
    """The hub redeems its claim code (`POST /v1/hubs/claim`); the enrollment answer."""
    hub_key = public_key_bytes(Ed25519PrivateKey.generate().public_key())

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            body = {"claim_code": code, "public_key": b64encode(hub_key)}
            return await client.post("/v1/hubs/claim", json=body)

    response = asyncio.run(post())
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _pinned(answer: Mapping[str, Any]) -> dict[str, bytes]:
    return {kid: b64decode(raw) for kid, raw in answer["issuer_keys"].items()}


def _report(service: Service, hub_id: str, version: int) -> None:
    """The hub reports it applied `version` (as `HubLink` stores its report)."""
    report = ReportedDocument(hub=hub_id, version=version, applied_at=0.0).to_bytes()
    now = service.runtime.clock.now()
    assert committed(
        service.engine, lambda tx: apply_reported(tx, hub_id=hub_id, payload=report, now=now)
    )


class _TakenUpOnceRead(dict[str, bytes]):
    """The published keys, as enrollment reads them: right after that read, the service
    takes up the changed keys, as it may between any two steps of a request."""

    def __init__(self, keys: Mapping[str, bytes], take_up: Callable[[], None]) -> None:
        super().__init__(keys)
        self._take_up: Callable[[], None] | None = take_up

    def items(self) -> ItemsView[str, bytes]:
        read = dict(super().items())
        take_up, self._take_up = self._take_up, None
        if take_up is not None:
            take_up()
        return read.items()


def test_a_hub_enrolling_as_a_key_is_taken_up_is_sent_the_key(service: Service) -> None:
    code = _hub_to_claim(service)
    old = service.runtime.keys.signer.kid
    new = issuer_keys.add(service.keys_dir)  # `doorstep keys add`, not taken up yet
    service.runtime.keys = issuer_keys.IssuerKeys(
        service.runtime.keys.signer, _TakenUpOnceRead(service.runtime.keys.public, service.look)
    )

    answer = _enroll(service, code)

    hub_id = answer["hub_id"]
    assert set(service.runtime.keys.public) == {old, new}  # taken up during the enrollment
    assert set(answer["issuer_keys"]) == {old}  # read just before
    # Not handed the new key, the hub is not counted as trusting it, and `keys use` waits...
    assert service.trusted_by(new) == "trusted by 0 of 1 hubs"
    refused = service.keys("use", new)
    assert refused.exit_code == 1 and "1 of 1 enrolled hubs have not applied" in refused.output
    # ... for it to apply the document the service sends it, which names the new key and
    # which it can verify with the keys it was handed.
    (payload,) = wait_until(lambda: service.documents_for(hub_id), TIMEOUT, "the hub's document")
    document = verify_shadow(payload, _pinned(answer), hub_id)
    assert set(document.trusted_keys() or {}) == {old, new}
    _report(service, hub_id, document.version)
    assert service.trusted_by(new) == "trusted by 1 of 1 hubs"
    assert service.keys("use", new).exit_code == 0


def test_a_key_added_after_a_hub_enrolled_reaches_it(service: Service) -> None:
    answer = _enroll(service, _hub_to_claim(service))
    hub_id, old = answer["hub_id"], service.runtime.keys.signer.kid
    assert set(answer["issuer_keys"]) == {old}
    assert service.trusted_by(old) == "trusted by 1 of 1 hubs"  # handed it at enrollment

    assert service.keys("add").exit_code == 0
    (new,) = {key.kid for key in issuer_keys.listing(service.keys_dir)} - {old}
    service.look()

    assert service.trusted_by(new) == "trusted by 0 of 1 hubs"
    (payload,) = wait_until(lambda: service.documents_for(hub_id), TIMEOUT, "the hub's document")
    document = verify_shadow(payload, _pinned(answer), hub_id)
    assert set(document.trusted_keys() or {}) == {old, new}
    _report(service, hub_id, document.version)
    assert service.trusted_by(new) == "trusted by 1 of 1 hubs"
    assert service.keys("use", new).exit_code == 0


def test_a_hub_enrolling_as_a_key_is_retired_is_sent_the_set_without_it(
    service: Service,
) -> None:
    code = _hub_to_claim(service)
    old = service.runtime.keys.signer.kid
    new = issuer_keys.add(service.keys_dir)
    service.look()
    assert service.keys("use", new).exit_code == 0  # no hub enrolled yet to wait for
    service.look()
    issuer_keys.retire(service.keys_dir, old)  # `doorstep keys retire`, not taken up yet
    service.runtime.keys = issuer_keys.IssuerKeys(
        service.runtime.keys.signer, _TakenUpOnceRead(service.runtime.keys.public, service.look)
    )

    answer = _enroll(service, code)

    hub_id = answer["hub_id"]
    assert set(service.runtime.keys.public) == {new}
    assert set(answer["issuer_keys"]) == {old, new}  # read just before the retirement
    (payload,) = wait_until(lambda: service.documents_for(hub_id), TIMEOUT, "the hub's document")
    document = verify_shadow(payload, _pinned(answer), hub_id)
    assert set(document.trusted_keys() or {}) == {new}  # the hub stops trusting the old key
