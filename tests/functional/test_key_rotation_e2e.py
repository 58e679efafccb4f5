"""Rotating the issuer key, end to end: `doorstep keys` against a live service, a real
Mosquitto and an in-process hub built as `doorstep hub` builds it.

add a key -> (serve restarted) the hub learns it and reports a version that covers it ->
`keys use` it (refused while the hub has not caught up) -> a courier's entry opens with
grants the new key signs -> retire the old key -> a grant the old key signs is refused at
the hub (`token_unknown_key`) and the lock is never called, also after the hub restarts.

The same steps with `serve` left running (and its writer process, which signs the
couriers' grants): each command is taken up within seconds (`grants.rotation`); a key
file that is no key changes nothing, and the service signs on with the key it has.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep import demo
from doorstep.accounts.models import Role
from doorstep.accounts.service import create_user
from doorstep.app import create_app
from doorstep.broker import Mosquitto
from doorstep.broker.supervisor import free_port
from doorstep.cli.main import cli
from doorstep.clock import SystemClock
from doorstep.db import ordered_id
from doorstep.deps import Runtime
from doorstep.grants.shadow import reported_state
from doorstep.homes.service import broker_credentials
from doorstep.hub.agent import HubAgent
from doorstep.hub.runner import HubOptions, build
from doorstep.hub.simcontrol import SimControl
from doorstep.protocol import PROTOCOL_VERSION
from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import GrantClaims, GrantSigner, audience_for, new_token_id
from doorstep.protocol.messages import Command, CommandKind, b64encode
from doorstep.protocol.mqtt import BrokerAddress
from doorstep.settings import Settings
from polling import wait_until

TIMEOUT = 20


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class Service:
    """The live service on one port, stopped and started again as `serve` would be."""

    def __init__(self, settings: Settings, broker: Mosquitto) -> None:
        self.settings = settings
        self.broker = broker
        self.url = f"http://127.0.0.1:{free_port()}"
        self.runtime: Runtime
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        broker = self.broker
        address = BrokerAddress(
            broker.host, broker.port, broker.service_user, broker.service_password
        )

        def enrolled() -> None:
            with self.runtime.sessions() as session:
                broker.update_hubs(broker_credentials(session))

        app = create_app(
            self.settings, broker=address, clock=SystemClock(), on_hub_enrolled=enrolled
        )
        self.runtime = app.state.runtime
        port = int(self.url.rsplit(":", 1)[1])
        self._server = _Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        assert self._server.ready.wait(30), "service did not start"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
            self._server = self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def demo(self) -> demo.Service:
        return demo.Service(self.url, self.settings.data_dir, None, {})

    def keys(self, *args: str) -> Result:
        where = ["--data-dir", str(self.settings.data_dir)]
        where += ["--database-url", self.settings.database_url or ""]
        return CliRunner().invoke(cli, ["keys", args[0], *where, *args[1:]])


class Hub:
    """A hub in this process, started (and started again) from its data directory."""

    def __init__(self, options: HubOptions) -> None:
        self.options = options
        self.agent: HubAgent
        self.control: SimControl
        self.running = False
        self.start()

    def start(self) -> None:
        self.agent, config, self.control = build(self.options)
        self.control.start()
        self.agent.start(config.broker)
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.control.stop()
            self.agent.stop()

    @property
    def unlock_calls(self) -> int:
        return int(self.agent.locks["front"].unlock_calls)  # type: ignore[attr-defined]


@pytest.fixture
def service(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, broker: Mosquitto
) -> Iterator[Service]:
    """Without the writer process, unless a test asks for it (`indirect` True)."""
    settings = Settings(
        data_dir=tmp_path / "service",
        database_url=database_url,
        broker_client_id=f"svc-{secrets.token_hex(4)}",
        writer_process=getattr(request, "param", False),
    )
    live = Service(settings, broker)
    live.start()
    yield live
    live.stop()


@pytest.fixture
def world(service: Service) -> Iterator[demo.World]:
    def operator(_service: demo.Service, email: str, password: str) -> None:
        with service.runtime.sessions() as session:
            create_user(
                session,
                email=email,
                name="Operator",
                password=password,
                role=Role.OPERATOR,
                now=SystemClock().now(),
            )
            session.commit()

    built = demo.build_world(
        service.demo,
        homes=1,
        say=lambda _m: None,
        make_operator=operator,
        launch_hub=lambda svc, hub_dir, code: Hub(  # type: ignore[arg-type, return-value]
            HubOptions(data_dir=hub_dir, service_url=svc.url, claim_code=code)
        ),
    )
    yield built
    built.close()


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _refused(result: Result, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.output, result.output


def _trusted_by_all(service: Service, kid: str) -> bool:
    line = next(line for line in _ok(service.keys("list")).splitlines() if line.startswith(kid))
    return "trusted by 1 of 1 hubs" in line


def _hub_caught_up(service: Service, home: demo.Home) -> bool:
    with service.runtime.sessions() as session:
        version, reported, _codes = reported_state(session, home.hub_id)
    return reported == version


def _enter(world: demo.World, home: demo.Home) -> None:
    """A courier's delivery into the home, through to the door locked again."""
    courier = world.couriers[0][1]
    barcode = f"PKG-{secrets.token_hex(3)}"
    delivery = demo.book(world, home, [barcode])
    entry = demo.request_entry(courier, delivery["id"], barcode, home.latitude, home.longitude)
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"


def _unlock_signed_by(hub: Hub, home: demo.Home, key: Ed25519PrivateKey) -> Any:
    """An unlock command with a grant `key` signed, as the service would send it."""
    now = int(time.time())
    entry = ordered_id("ent")
    claims = GrantClaims(
        audience=audience_for(home.hub_id, "front"),
        not_before=now,
        expires=now + 600,
        issued_at=now,
        token_id=new_token_id(),
        scope=("unlock",),
        entry_id=entry,
    )
    command = Command(
        v=PROTOCOL_VERSION,
        command_id=f"cmd-{secrets.token_hex(4)}",
        kind=CommandKind.UNLOCK,
        not_after=now + 30,
        entry_id=entry,
        access_point="front",
        grant=b64encode(GrantSigner(key).sign(claims)),
    )
    return hub.agent.handle_command(command.model_dump_json().encode())


def test_rotating_the_issuer_key(service: Service, world: demo.World) -> None:
    home = world.homes[0]
    hub = home.hub_process
    assert isinstance(hub, Hub)
    old = service.runtime.keys.signer.kid
    keys_dir = service.settings.data_dir / "keys"
    old_key = serialization.load_pem_private_key(
        (keys_dir / f"issuer-{old}.pem").read_bytes(), password=None
    )
    assert isinstance(old_key, Ed25519PrivateKey)

    # A new key does not sign, and cannot be used before hubs have learnt it. Added
    # while serve is stopped, it is published when serve starts.
    service.stop()
    added = _ok(service.keys("add"))
    new = next(
        line.split()[0] for line in _ok(service.keys("list")).splitlines() if old not in line
    )
    assert new in added and "A running `doorstep serve` publishes it" in added
    _refused(service.keys("use", new), "has not been published yet", "(start it, if it is not")
    hub.stop()  # the hub is away while serve publishes the key
    service.start()
    assert service.runtime.keys.signer.kid == old
    _refused(service.keys("use", new), "1 of 1 enrolled hubs have not applied")

    hub.start()  # online again: its document is published, it applies and reports it
    wait_until(lambda: _trusted_by_all(service, new), TIMEOUT, "the hub to trust the new key")
    _ok(service.keys("use", new))
    service.restart()
    assert service.runtime.keys.signer.kid == new
    _enter(world, home)  # its grant signed by the new key

    _refused(service.keys("retire", new), "is the signing key")
    _ok(service.keys("retire", old))
    service.restart()
    wait_until(lambda: _hub_caught_up(service, home), TIMEOUT, "the hub to apply the new set")
    assert old not in _ok(service.keys("list"))

    calls = hub.unlock_calls
    refused = _unlock_signed_by(hub, home, old_key)
    assert refused.result == "refused" and refused.reason == Reason.TOKEN_UNKNOWN_KEY
    assert hub.unlock_calls == calls
    hub.stop()
    hub.start()  # what it trusts survives a restart (hub.json names the old key alone)
    demo.wait_hub_online(home, online=True)
    refused = _unlock_signed_by(hub, home, old_key)
    assert refused.result == "refused" and refused.reason == Reason.TOKEN_UNKNOWN_KEY
    assert hub.unlock_calls == 0  # a new lock object since the restart
    _enter(world, home)


def _added(service: Service) -> str:
    """`doorstep keys add`; the new key's id."""
    before = {line.split()[0] for line in _ok(service.keys("list")).splitlines()}
    _ok(service.keys("add"))
    (new,) = {line.split()[0] for line in _ok(service.keys("list")).splitlines()} - before
    return new


def _published(service: Service, kid: str) -> bool:
    line = next(line for line in _ok(service.keys("list")).splitlines() if line.startswith(kid))
    return "not published yet" not in line


def _retired(service: Service, kid: str) -> bool:
    """`doorstep keys retire`, refused (changing nothing) while serve still signs with it."""
    result = service.keys("retire", kid)
    if result.exit_code != 0:
        _refused(result, f"the running service still signs with {kid}")
    return result.exit_code == 0


def _applied_since(service: Service, home: demo.Home, version: int) -> bool:
    """The hub has applied (and reported) a document newer than `version`."""
    with service.runtime.sessions() as session:
        current, reported, _codes = reported_state(session, home.hub_id)
    return reported == current > version


def _shadow_version(service: Service, home: demo.Home) -> int:
    with service.runtime.sessions() as session:
        return reported_state(session, home.hub_id)[0]


@pytest.mark.parametrize("service", [True], indirect=True, ids=["writer_process"])
def test_the_running_service_takes_up_each_key_command(service: Service, world: demo.World) -> None:
    home = world.homes[0]
    hub = home.hub_process
    assert isinstance(hub, Hub)
    hot = service.runtime.hot
    assert hot is not None and hot.ready  # couriers' grants are signed in the writer process
    old = service.runtime.keys.signer.kid
    keys_dir = service.settings.data_dir / "keys"
    old_key = serialization.load_pem_private_key(
        (keys_dir / f"issuer-{old}.pem").read_bytes(), password=None
    )
    assert isinstance(old_key, Ed25519PrivateKey)

    new = _added(service)  # published to the hub by the running service, no restart
    wait_until(lambda: _trusted_by_all(service, new), TIMEOUT, "the hub to trust the new key")
    _ok(service.keys("use", new))
    wait_until(lambda: _retired(service, old), TIMEOUT, "the service to sign with the new key")
    assert (keys_dir / "retired" / f"issuer-{old}.pem").exists()
    version = _shadow_version(service, home)
    wait_until(lambda: _applied_since(service, home, version), TIMEOUT, "the hub to forget it")

    # The hub trusts the new key alone: this entry opens only if the writer process signed
    # its grant with the new key too.
    _enter(world, home)
    calls = hub.unlock_calls
    refused = _unlock_signed_by(hub, home, old_key)
    assert refused.result == "refused" and refused.reason == Reason.TOKEN_UNKNOWN_KEY
    assert hub.unlock_calls == calls
    assert service.runtime.hot is hot and hot.ready  # the same process, never restarted


def test_a_key_file_that_is_no_key_changes_nothing_in_the_running_service(
    service: Service, world: demo.World, caplog: pytest.LogCaptureFixture
) -> None:
    home = world.homes[0]
    old = service.runtime.keys.signer.kid
    keys_dir = service.settings.data_dir / "keys"
    bad = keys_dir / "issuer-0123456789ab.pem"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    new = _added(service)

    wait_until(lambda: str(bad) in caplog.text, TIMEOUT, "the service to say why")
    assert f"still signing with {old}" in caplog.text
    assert not _published(service, new)  # nor anything else of the changed directory
    _enter(world, home)  # signed with the key it had, which the hub trusts

    bad.unlink()  # the next change is taken up
    wait_until(lambda: _trusted_by_all(service, new), TIMEOUT, "the hub to trust the new key")
    _ok(service.keys("use", new))
    wait_until(lambda: _retired(service, old), TIMEOUT, "the service to sign with the new key")
    _enter(world, home)
