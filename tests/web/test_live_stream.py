"""The pages' event stream (`doorstep.web.live`): a change to the home arrives as an
`event: change` naming only the action; a signed-out session ends the stream and its
reconnect is refused; and a page whose stream ends reconnects by itself and keeps
updating without a reload (Chromium)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import ViewportSize, expect

from doorstep import demo
from doorstep.web import live as web_live

from .conftest import PHONE, Watched
from .support import WebClient, session_token
from .test_journeys import LIVE_TIMEOUT_MS

RESIDENT = "resident1@doorstep.test"
READ_TIMEOUT = httpx.Timeout(10.0)


def _stream_of(client: WebClient, path: str) -> Any:
    return client.http.stream("GET", path, timeout=READ_TIMEOUT)


def test_a_change_arrives_as_an_event_naming_only_the_action(
    live: Any, world: demo.World, web_clients: Callable[[], WebClient]
) -> None:
    home = world.homes[0]
    resident = web_clients().use_session(session_token(live, RESIDENT))
    with _stream_of(resident, f"/homes/{home.id}/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-store"
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"  # subscribed before this was sent
        home.resident.call("POST", f"/v1/homes/{home.id}/not-today", 201)
        event = [line for line in (next(lines) for _ in range(5)) if line]
    assert re.fullmatch(r"id: \d+", event[0])
    assert event[1:] == [
        "event: change",
        f'data: {{"action":"closure:added","home_id":"{home.id}"}}',
    ]


def test_signing_out_ends_the_stream_and_its_reconnect_is_refused(
    live: Any,
    world: demo.World,
    web_clients: Callable[[], WebClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(web_live, "KEEPALIVE_SECONDS", 0.2)
    home = world.homes[0]
    token = session_token(live, RESIDENT)
    browser = web_clients().use_session(token)
    with _stream_of(browser, "/approvals/stream") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        assert next(lines) == ""
        assert next(lines) == ": keepalive"
        same = web_clients().use_session(token)
        assert same.post("/signout", {}, csrf_from="/homes").status_code == 303
        assert [line for line in lines if line not in ("", ": keepalive")] == []  # it ends
    again = browser.get(f"/homes/{home.id}/stream")
    assert again.status_code == 401


def test_the_page_reconnects_when_its_stream_ends_and_keeps_updating(
    live: Any,
    world: demo.World,
    pages: Callable[[str, ViewportSize], Watched],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(web_live, "STREAM_SECONDS", 1.0)
    home, courier = world.homes[0], world.couriers[0][1]
    current = home.resident.call("GET", f"/v1/homes/{home.id}/preferences")
    home.resident.call(
        "PUT", f"/v1/homes/{home.id}/preferences", json={**current, "approval_mode": "ask"}
    )
    watched = pages("reconnect", PHONE)
    page = watched.page
    page.context.add_cookies(
        [{"name": "doorstep_session", "value": session_token(live, RESIDENT), "url": live.url}]
    )
    with page.expect_request(lambda r: r.resource_type == "eventsource"):
        page.goto(f"/homes/{home.id}")
    page.evaluate("window.journeyMark = 'not reloaded'")
    for _ in range(2):  # the stream ends every second; the page opens it again
        with page.expect_request(lambda r: r.resource_type == "eventsource"):
            pass
    delivery = demo.book(world, home, ["PKG-RE"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-RE", home.latitude, home.longitude)
    assert entry["state"] == "awaiting_approval"
    card = page.locator(f'[data-approval="{entry["id"]}"]')
    expect(card).to_contain_text("Casey Courier (Parcelly)", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.journeyMark") == "not reloaded"
