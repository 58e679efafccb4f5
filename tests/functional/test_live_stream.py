"""The resident's live event stream (Server-Sent Events) over real HTTP: a delivery shows
up as it happens, a reconnect with Last-Event-ID gets what it missed, records another
`serve` process commits stream too, another resident cannot listen, and a stream ends
once its token is ended."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

import doorstep.live
from doorstep import demo
from doorstep.accounts.models import AccessToken
from doorstep.accounts.service import end_sessions
from doorstep.audit.models import AuditEvent
from doorstep.security import token_digest
from polling import wait_until


@pytest.fixture
def writer_process() -> bool:
    """As `serve` runs: the hot paths through the writer process (`doorstep.hotwriter`)."""
    return True


class Listener(threading.Thread):
    """Reads one SSE stream in the background until `until` is seen or the read times out."""

    def __init__(
        self,
        url: str,
        token: str,
        until: str,
        last_id: str | None = None,
        count: int | None = None,
    ) -> None:
        """Stops at the first event named `until`, or after `count` events."""
        super().__init__(daemon=True)
        self.url, self.token, self.until, self.last_id = url, token, until, last_id
        self.count = count
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
                    if fields["event"] == self.until or len(self.events) == self.count:
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


# Another `serve` process on the same database and data directory: its own app, its own
# live bus (this one's never hears of what it commits), setting the home's pet notes.
OTHER_PROCESS = """
import sys
from pathlib import Path
from fastapi.testclient import TestClient
from doorstep.app import create_app
from doorstep.settings import Settings

data_dir, database_url, home_id, token, *notes = sys.argv[1:]
settings = Settings(data_dir=Path(data_dir), database_url=database_url, writer_process=False)
with TestClient(create_app(settings, broker=None)) as client:
    client.headers["authorization"] = f"Bearer {token}"
    path = f"/v1/homes/{home_id}/preferences"
    for note in notes:
        current = client.get(path).raise_for_status().json()
        client.put(path, json={**current, "pet_notes": note}).raise_for_status()
"""


@pytest.fixture
def noted(live: Any) -> Iterator[tuple[demo.Api, str]]:
    """A resident and their home, with no hub: nothing else writes its audit records."""
    email = "noted@doorstep.test"
    with demo.Api(live.url) as anonymous:
        account = {"email": email, "name": "Noted", "password": demo.PASSWORD}
        anonymous.call("POST", "/v1/residents", 201, json=account)
    with demo.Api.login(
        live.url, grant_type="password", username=email, password=demo.PASSWORD
    ) as resident:
        place = {"latitude": 51.5, "longitude": -0.12, "timezone": "Europe/London"}
        home = resident.call(
            "POST", "/v1/homes", 201, json={"name": "Home", "address": "1 Quiet Street", **place}
        )
        yield resident, str(home["id"])


def _note_set(api: demo.Api, home_id: str, note: str) -> None:
    current = api.call("GET", f"/v1/homes/{home_id}/preferences")
    api.call("PUT", f"/v1/homes/{home_id}/preferences", json={**current, "pet_notes": note})


def _notes(listener: Listener) -> list[str]:
    return [record["data"]["pet_notes"] for _seq, _action, record in listener.events]


def test_records_another_process_commits_stream_too_and_a_reconnect_gets_them_all(
    live: Any, noted: tuple[demo.Api, str], tmp_path: Path
) -> None:
    """Two `serve` processes behind one load balancer: a stream opened on this one carries
    what the other commits, in sequence, within about a second; and a reconnect with
    Last-Event-ID gets every record after it, from both, none twice."""
    resident, home_id = noted
    token = _token(resident)
    url = f"{live.url}/v1/homes/{home_id}/events"

    def other_process(*notes: str) -> None:
        command = [sys.executable, "-c", OTHER_PROCESS, str(live.data_dir)]
        command += [live.settings.database_url, home_id, token, *notes]
        subprocess.run(command, check=True, cwd=tmp_path, timeout=60)

    listener = Listener(url, token, until="-", count=5)
    listener.start()
    assert listener.connected.wait(10) and listener.status == 200
    _note_set(resident, home_id, "here 1")
    other_process("there 1", "there 2", "there 3")
    wait_until(lambda: "there 3" in _notes(listener), 3.0, "the other process's last record")
    _note_set(resident, home_id, "here 2")
    listener.join(10)
    assert _notes(listener) == ["here 1", "there 1", "there 2", "there 3", "here 2"]
    seqs = [seq for seq, _action, _record in listener.events]
    with live.sessions() as session:
        stored = session.scalars(
            select(AuditEvent.seq)
            .where(AuditEvent.home_id == home_id, AuditEvent.seq >= seqs[0])
            .order_by(AuditEvent.seq)
        ).all()
    assert seqs == list(stored)

    # Dropped after "there 1": the reconnect replays the rest, then goes on live.
    again = Listener(url, token, until="-", last_id=str(seqs[1]), count=5)
    again.start()
    assert again.connected.wait(10) and again.status == 200
    wait_until(lambda: len(again.events) >= 3, 5.0, "the replay")
    other_process("there 4")
    _note_set(resident, home_id, "here 3")
    again.join(10)
    assert _notes(again) == ["there 2", "there 3", "here 2", "there 4", "here 3"]


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
