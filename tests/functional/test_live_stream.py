"""The resident's live event stream (Server-Sent Events) over real HTTP: a delivery shows
up as it happens, a reconnect with Last-Event-ID gets what it missed, another resident
cannot listen, and a stream ends once its token is ended."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson
import pytest

import doorstep.live
from doorstep import demo
from doorstep.accounts.models import AccessToken
from doorstep.accounts.service import end_sessions
from doorstep.security import token_digest


@pytest.fixture
def writer_process() -> bool:
    """As `serve` runs: the hot paths through the writer process (`doorstep.hotwriter`)."""
    return True


class Listener(threading.Thread):
    """Reads one SSE stream in the background until `until` is seen or the read times out."""

    def __init__(self, url: str, token: str, until: str, last_id: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.until, self.last_id = url, token, until, last_id
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.status: int | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        headers = {"authorization": f"Bearer {self.token}"}
        if self.last_id is not None:
            headers["last-event-id"] = self.last_id
        with (
            httpx.Client(timeout=httpx.Timeout(20.0)) as client,
            client.stream("GET", self.url, headers=headers) as response,
        ):
            self.status = response.status_code
            self.connected.set()
            if response.status_code != 200:
                return
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if line:
                    key, _, value = line.partition(": ")
                    fields[key] = value
                    continue
                if "data" in fields:
                    record = orjson.loads(fields["data"])
                    self.events.append((int(fields["id"]), fields["event"], record))
                    if fields["event"] == self.until:
                        return
                fields = {}


def _token(api: demo.Api) -> str:
    return str(api.http.headers["authorization"]).split(" ", 1)[1]


def test_a_delivery_streams_live_and_a_reconnect_misses_nothing(
    live: Any, world: demo.World
) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    url = f"{live.url}/v1/homes/{home.id}/events"
    listener = Listener(url, _token(home.resident), until="entry:done")
    listener.start()
    assert listener.connected.wait(10) and listener.status == 200
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    home.door("open_door")
    home.door("close_door")
    assert demo.wait_entry(courier, entry["id"], "done")["state"] == "done"
    listener.join(20)
    mine = [(seq, action) for seq, action, record in listener.events
            if record["subject"] == entry["id"]]  # fmt: skip
    assert [action for _seq, action in mine] == [
        "entry:authorized",
        "entry:proof_presented",
        "entry:unlocked",
        "entry:opened",
        "entry:closed",
        "entry:locked",
        "entry:done",
    ]
    seqs = [seq for seq, _action, _record in listener.events]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    # Reconnect as if the connection dropped after "unlocked": the rest is replayed.
    unlocked_seq = next(seq for seq, action in mine if action == "entry:unlocked")
    again = Listener(url, _token(home.resident), until="entry:done", last_id=str(unlocked_seq))
    again.start()
    again.join(20)
    replayed = [action for _seq, action, record in again.events if record["subject"] == entry["id"]]
    assert replayed == ["entry:opened", "entry:closed", "entry:locked", "entry:done"]


def test_another_resident_cannot_listen(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    with demo.Api(live.url) as anonymous:
        account = {"email": "eve@doorstep.test", "name": "Eve", "password": demo.PASSWORD}
        anonymous.call("POST", "/v1/residents", 201, json=account)
    eve = demo.Api.login(
        live.url, grant_type="password", username="eve@doorstep.test", password=demo.PASSWORD
    )
    with eve:
        listener = Listener(f"{live.url}/v1/homes/{home.id}/events", _token(eve), until="-")
        listener.start()
        listener.join(10)
        assert listener.status == 404 and listener.events == []
        courier = world.couriers[0][1]
        listener = Listener(f"{live.url}/v1/homes/{home.id}/events", _token(courier), until="-")
        listener.start()
        listener.join(10)
        assert listener.status == 403


def test_a_stream_ends_once_its_token_is_ended(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed out everywhere, or a password changed: the stream the token opened does not
    go on telling whoever holds it what happens at the home."""
    monkeypatch.setattr(doorstep.live, "KEEPALIVE_SECONDS", 0.5)
    home = world.homes[0]
    url = f"{live.url}/v1/homes/{home.id}/events"
    token = _token(home.resident)
    listener = Listener(url, token, until="never")
    listener.start()
    assert listener.connected.wait(10) and listener.status == 200
    listener.join(1.5)
    assert listener.is_alive()  # a valid token: the stream goes on

    with live.sessions() as session:
        owner = session.get(AccessToken, token_digest(token))
        assert owner is not None
        end_sessions(session, user_id=owner.principal_id)
        session.commit()

    listener.join(10)
    assert not listener.is_alive()
    again = Listener(url, token, until="never")
    again.start()
    again.join(10)
    assert again.status == 401
