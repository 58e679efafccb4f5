"""Shared fixtures: a real Mosquitto, SQLite and PostgreSQL databases, a live service.

The service runs in-process under a real uvicorn server on a loopback port, so hubs enroll
and clients talk to it over real HTTP; the broker is the same Mosquitto `serve` supervises.
PostgreSQL tests need DOORSTEP_TEST_PG_URL (scripts/test starts a throwaway cluster).
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from doorstep import db, demo
from doorstep.accounts.models import Role
from doorstep.accounts.service import create_user
from doorstep.app import create_app
from doorstep.broker import Mosquitto
from doorstep.clock import SystemClock
from doorstep.deps import Runtime
from doorstep.homes.service import broker_credentials
from doorstep.hub.runner import HubOptions, build
from doorstep.protocol.mqtt import BrokerAddress
from doorstep.settings import EntrySettings, NotifySettings, Settings
from doorstep.video.camera import SimulatedCamera, Source
from postgres import postgres_database


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path_factory.mktemp("broker"))
    mosquitto.start({})
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'doorstep.db'}"
        return
    with postgres_database() as url:
        yield url


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class Live:
    url: str
    data_dir: Path
    settings: Settings
    sessions: sessionmaker[Session]
    broker: Mosquitto
    runtime: Runtime  # the app's own (its hub link exists once the app has started)

    @property
    def service(self) -> demo.Service:
        return demo.Service(self.url, self.data_dir, None, {})


@pytest.fixture
def notify_settings() -> NotifySettings:
    """The service's notification settings; a test module overrides this fixture to point
    the service at its own SMTP server and webhook receiver."""
    return NotifySettings()


@pytest.fixture
def entry_settings() -> EntrySettings:
    """The service's entry settings (limits, timeouts); a module may override this."""
    return EntrySettings()


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """An engine on `database_url` (SQLite, then PostgreSQL), migrated to the head."""
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def camera() -> Iterator[SimulatedCamera]:
    """A small simulated camera (real ffmpeg) serving a scene."""
    cam = SimulatedCamera(Source.SCENE, width=160, height=120, fps=10)
    cam.start()
    yield cam
    cam.stop()


@pytest.fixture
def writer_process() -> bool:
    """Whether the service stores its hot paths from a writer process of its own
    (`doorstep.hotwriter`, which `serve` starts by default). Off here: starting that
    process costs about a second per test. The modules whose paths it changes (the
    courier's entry, reply waiters, live streams, notifications, the process itself)
    switch it on, and every test of real `serve` processes (tests/e2e) runs with it."""
    return False


@pytest.fixture
def extend_app() -> Callable[[FastAPI], None]:
    """Called with the live service's app before it serves; a test package overrides this
    fixture to mount more on it (tests/web mounts the web pages)."""
    return lambda _app: None


@pytest.fixture
def live(
    tmp_path: Path,
    database_url: str,
    broker: Mosquitto,
    notify_settings: NotifySettings,
    entry_settings: EntrySettings,
    writer_process: bool,
    extend_app: Callable[[FastAPI], None],
) -> Iterator[Live]:
    settings = Settings(
        data_dir=tmp_path / "service",
        database_url=database_url,
        broker_client_id=f"svc-{secrets.token_hex(4)}",
        notify=notify_settings,
        entry=entry_settings,
        writer_process=writer_process,
    )
    address = BrokerAddress(broker.host, broker.port, broker.service_user, broker.service_password)
    holder: dict[str, sessionmaker[Session]] = {}

    def enrolled() -> None:
        with holder["sessions"]() as session:
            broker.update_hubs(broker_credentials(session))

    app = create_app(settings, broker=address, clock=SystemClock(), on_hub_enrolled=enrolled)
    extend_app(app)
    holder["sessions"] = app.state.runtime.sessions
    # Bound here and handed over: a port only probed free may be taken by another test
    # process before the server binds it ("address already in use").
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    assert server.ready.wait(30), "service did not start"
    yield Live(
        f"http://127.0.0.1:{port}",
        settings.data_dir,
        settings,
        holder["sessions"],
        broker,
        app.state.runtime,
    )
    server.should_exit = True
    thread.join(15)


class InProcessHub:
    """A hub agent running inside the test process (real MQTT, real journal)."""

    def __init__(self, options: HubOptions) -> None:
        self.options = options
        self.agent, self.config, self.control = build(options)
        self.control.start()
        self.agent.start(self.config.broker)
        self.popen = None

    @property
    def lock(self) -> Any:
        return self.agent.locks[self.config.access_points[0]]

    def stop(self) -> None:
        """Stop the hub (a test may do it early, to play a hub that dies); idempotent."""
        if getattr(self, "stopped", False):
            return
        self.stopped = True
        self.control.stop()
        self.agent.stop()


def launch_in_process(
    service: demo.Service,
    hub_dir: Path,
    claim_code: str,
    locks_toml: str | None = None,
    **options: Any,
) -> InProcessHub:
    if locks_toml is not None:
        hub_dir.mkdir(parents=True, exist_ok=True)
        (hub_dir / "locks.toml").write_text(locks_toml)
    return InProcessHub(
        HubOptions(data_dir=hub_dir, service_url=service.url, claim_code=claim_code, **options)
    )


def make_operator(live: Live) -> Any:
    def create(_service: demo.Service, email: str, password: str) -> None:
        with live.sessions() as session:
            create_user(
                session,
                email=email,
                name="Operator",
                password=password,
                role=Role.OPERATOR,
                now=SystemClock().now(),
            )
            session.commit()

    return create


@pytest.fixture
def make_world(live: Live) -> Iterator[Callable[..., demo.World]]:
    """Build a world whose hub runs in-process; `locks_toml` becomes the hub's locks.toml
    (which driver runs each door), else every door is simulated; other keyword arguments
    go to its `HubOptions`."""
    built: list[demo.World] = []

    def make(locks_toml: str | None = None, **hub_options: Any) -> demo.World:
        world = demo.build_world(
            live.service,
            homes=1,
            say=lambda _m: None,
            make_operator=make_operator(live),
            launch_hub=lambda service, hub_dir, code: launch_in_process(
                service, hub_dir, code, locks_toml, **hub_options
            ),
        )
        built.append(world)
        return world

    yield make
    for world in built:
        world.close()


@pytest.fixture
def world(make_world: Callable[..., demo.World]) -> demo.World:
    """An operator, a carrier with one courier, one home whose hub runs in-process."""
    return make_world()
