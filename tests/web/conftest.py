"""Fixtures for the web app: the live service with `doorstep.web` installed, HTTP clients
that keep cookies, in-process hubs enrolled by claim code, standalone services (no broker,
a frozen clock, mail to a real SMTP server of their own) for expiry, cookie, limiter and
password tests, and Debian's Chromium through Playwright, with console errors collected
and screenshots kept in `artifacts/`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    Response,
    ViewportSize,
    sync_playwright,
)

from doorstep import demo
from doorstep.accounts.models import Role
from doorstep.accounts.service import create_user
from doorstep.app import create_app
from doorstep.clock import FrozenClock, SystemClock
from doorstep.hub.runner import HubOptions, build
from doorstep.settings import AuthSettings, NotifySettings, Settings
from doorstep.web import install
from smtp_mailbox import Mail, Mailbox, serving

from .support import WebClient

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 360, "height": 740}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


@pytest.fixture
def installed() -> list[FastAPI]:
    """The live app(s) the web was installed on, for tests that read the routes."""
    return []


@pytest.fixture
def extend_app(installed: list[FastAPI]) -> Callable[[FastAPI], None]:
    def extend(app: FastAPI) -> None:
        install(app)
        installed.append(app)

    return extend


@pytest.fixture
def web_clients(live: Any) -> Iterator[Callable[[], WebClient]]:
    """New cookie jars against the live service; all closed at the end."""
    made: list[WebClient] = []

    def make() -> WebClient:
        client = WebClient(httpx.Client(base_url=live.url, follow_redirects=False, timeout=30))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# --- standalone services (no broker, a frozen clock) ----------------------------------


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class Standalone:
    url: str
    clock: FrozenClock
    settings: Settings
    # What the service's SMTP server received (`standalone` starts one per app; a
    # Standalone made without one has an empty mailbox that nothing is sent to).
    mailbox: Mailbox = field(default_factory=Mailbox)
    clients: list[WebClient] = field(default_factory=list)

    def mail(self, event_id: str) -> Mail:
        """The mail sent for the outbox event `event_id`, as its recipient got it."""
        return self.mailbox.sent_for(event_id)

    def web(self) -> WebClient:
        """A client; with an https public URL it speaks https as far as its cookie jar
        knows, while the service gets plain http, as behind a TLS-terminating proxy."""
        https = (self.settings.public_url or "").startswith("https://")
        http = httpx.Client(
            base_url=self.url.replace("http://", "https://") if https else self.url,
            transport=_BehindProxy() if https else None,
            follow_redirects=False,
            timeout=30,
        )
        client = WebClient(http)
        self.clients.append(client)
        return client


class _BehindProxy(httpx.BaseTransport):
    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http")
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Callable[..., Standalone]]:
    """`make(public_url=..., auth=...)`: the service with the web installed on a loopback
    port, without a broker, on a frozen clock the test moves, mailing a real SMTP server
    of its own (`Standalone.mailbox`)."""
    running: list[tuple[_Server, threading.Thread, Standalone]] = []
    mail_servers = ExitStack()

    def make(public_url: str | None = None, auth: AuthSettings | None = None) -> Standalone:
        mailbox, smtp_port = mail_servers.enter_context(serving())
        settings = Settings(
            data_dir=tmp_path / f"svc-{len(running)}",
            public_url=public_url,
            auth=auth or AuthSettings(),
            # A short poll: nothing wakes the dispatcher when mail is queued.
            notify=NotifySettings(smtp_host="127.0.0.1", smtp_port=smtp_port, poll_seconds=0.1),
        )
        clock = FrozenClock(datetime(2030, 1, 7, 9, 0, tzinfo=UTC))
        app = create_app(settings, broker=None, clock=clock)
        install(app)
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
        service = Standalone(f"http://127.0.0.1:{port}", clock, settings, mailbox)
        running.append((server, thread, service))
        return service

    with mail_servers:
        yield make
        for server, thread, service in running:
            for client in service.clients:
                client.close()
            server.should_exit = True
            thread.join(15)


# --- hubs and the carrier side --------------------------------------------------------


@dataclass
class RunningHub:
    hub_dir: Path
    agent: Any
    control: Any

    def stop(self) -> None:
        self.control.stop()
        self.agent.stop()


@pytest.fixture
def hubs() -> Iterator[Callable[[str, Path, str], RunningHub]]:
    """`start(service_url, hub_dir, claim_code)`: a hub agent in this process that redeems
    the claim code, connects to the broker and drives a simulated door."""
    running: list[RunningHub] = []

    def start(service_url: str, hub_dir: Path, claim_code: str) -> RunningHub:
        agent, config, control = build(
            HubOptions(data_dir=hub_dir, service_url=service_url, claim_code=claim_code)
        )
        control.start()
        agent.start(config.broker)
        hub = RunningHub(hub_dir, agent, control)
        running.append(hub)
        return hub

    yield start
    for hub in running:
        hub.stop()


def operator_maker(live: Any) -> Callable[[demo.Service, str, str], None]:
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
def carrier_world(live: Any) -> Iterator[demo.World]:
    """An operator and a carrier with one courier (Casey Courier of Parcelly); no homes."""
    world = demo.build_world(
        live.service, homes=0, say=lambda _m: None, make_operator=operator_maker(live)
    )
    yield world
    world.close()


# --- the browser -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


@dataclass
class Watched:
    """A browser page whose console errors, page errors and responses are recorded."""

    page: Page
    name: str
    errors: list[str] = field(default_factory=list)
    responses: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    # Statuses a test expects documents to answer with (a form sent back with its
    # errors is 422); Chromium logs each such response as a console error, which is then
    # no error. Scripts and fetches never get this pass.
    expected_statuses: set[int] = field(default_factory=set)

    def expect_status(self, status: int) -> None:
        self.expected_statuses.add(status)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        expected = any(
            message.text.startswith(
                f"Failed to load resource: the server responded with a status of {status} "
            )
            and message.location.get("url", "") == self.page.url
            for status in self.expected_statuses
        )
        if not expected:
            self.errors.append(message.text)

    def on_page_error(self, error: Error) -> None:
        self.errors.append(f"page error: {error}")

    def on_response(self, response: Response) -> None:
        self.responses.append((response.url, response.request.resource_type, response.headers))

    def shot(self, step: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def pages(browser: Browser, live: Any) -> Iterator[Callable[[str, ViewportSize], Watched]]:
    """`open(name, viewport)`: a page in a fresh browser context (its own cookies). At the
    end, every page must have logged no console error and thrown no page error."""
    contexts: list[BrowserContext] = []
    watched: list[Watched] = []

    def open_page(name: str, viewport: ViewportSize) -> Watched:
        context = browser.new_context(viewport=viewport, base_url=live.url)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        item = Watched(page, name)
        page.on("console", item.on_console)
        page.on("pageerror", item.on_page_error)
        page.on("response", item.on_response)
        watched.append(item)
        return item

    yield open_page
    for context in contexts:
        context.close()
    for item in watched:
        assert item.errors == [], f"{item.name}: {item.errors}"
