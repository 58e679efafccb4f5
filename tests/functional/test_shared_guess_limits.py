"""Two `serve` processes behind one load balancer share the guess limits: a client that
spreads its hub claim-code guesses over both gets ten a minute in all, not ten from each,
and a process started again (a restart, a new release) still refuses it. Played by two
services on one database and data directory, each on a port of its own; SQLite, then
PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from doorstep.app import create_app
from doorstep.broker.supervisor import free_port
from doorstep.clock import FrozenClock
from doorstep.settings import Settings

CLAIMS_PER_MINUTE = 10
A_KEY = "A" * 43  # the form of an Ed25519 public key in base64url; no hub holds it


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2030, 1, 7, 9, 0, tzinfo=UTC))


@pytest.fixture
def serve(
    tmp_path: Path, database_url: str, clock: FrozenClock
) -> Iterator[Callable[[], httpx.Client]]:
    """`serve()`: one more service process on the shared database; a client of it."""
    running: list[tuple[_Server, threading.Thread, httpx.Client]] = []

    def start() -> httpx.Client:
        settings = Settings(data_dir=tmp_path / "service", database_url=database_url)
        app = create_app(settings, broker=None, clock=clock)
        port = free_port()
        server = _Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        assert server.ready.wait(30), "service did not start"
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        running.append((server, thread, client))
        return client

    yield start
    for server, thread, client in running:
        client.close()
        server.should_exit = True
        thread.join(15)


def _claim(client: httpx.Client, n: int) -> httpx.Response:
    return client.post(
        "/v1/hubs/claim", json={"claim_code": f"WRONG-CODE-{n:04d}", "public_key": A_KEY}
    )


def test_claim_guesses_spread_over_two_processes_get_one_limit(
    serve: Callable[[], httpx.Client], clock: FrozenClock
) -> None:
    first, second = serve(), serve()
    for n in range(CLAIMS_PER_MINUTE):
        refused = _claim(first if n % 2 else second, n)
        assert refused.status_code != 429, (n, refused.text)

    for client in (first, second):
        limited = _claim(client, 99)
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"

    assert _claim(serve(), 100).status_code == 429  # a process started since counts them too

    clock.set(clock.now() + timedelta(seconds=61))  # a minute on, the client may guess again
    assert _claim(first, 101).status_code != 429
