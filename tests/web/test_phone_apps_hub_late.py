"""The courier's and the visitor's apps in Debian's Chromium when the door's hub answers
late, and when the entry moves on while the phone signs.

As the JSON API (`/v1/courier/entries`, `/v1/visits`), the apps' own routes answer 202
when the hub did not answer the request or the proof within the wait: the command is out
and the door may still open. The page says "The door has not answered yet", keeps saying
it while the entry stays where it was (not "Checking the door…" again), and carries on
when the hub answers: the challenge signed once, the door unlocked. A visitor whose
entry ended while the phone signed (a 409) is shown how it ended, as the courier is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, Request, Route, ViewportSize, expect

from doorstep import demo
from doorstep.access.service import expire_stale
from doorstep.courier_web import progress as courier_progress
from doorstep.protocol.messages import Command
from doorstep.settings import NotifySettings
from doorstep.visitor_web import progress as visitor_progress
from functional.conftest import Mailbox
from polling import wait_until

from . import test_courier_journeys as journeys
from .conftest import PHONE, Watched
from .test_courier_journeys import headline, open_stop, request_entry, sign_in, unlock_calls
from .test_visitor_journeys import open_door
from .test_visitor_journeys import sign_in as guest_sign_in
from .visitors import accept, invite_guest, mailed_link, smtp_server

phones = journeys.phones  # the journeys' phone-sized pages, located at the home
GUEST = "late-guest@example.org"
LIVE_TIMEOUT_MS = 20_000


@pytest.fixture(name="mailbox")
def _mailbox() -> Iterator[tuple[Mailbox, int]]:
    yield from smtp_server()


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


class SilentHub:
    """The service's commands held back instead of published, and its wait for the hub's
    reply cut to half a second: to the service, the hub does not answer in time. `late`
    publishes what was held, as a hub that answers after all."""

    def __init__(self, live: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.link = live.runtime.link
        self.publish = self.link.publish_command
        self.held: list[tuple[str, Command]] = []
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(self.link, "publish_command", lambda h, c: self.held.append((h, c)))
        monkeypatch.setattr(live.runtime.settings.entry, "hub_reply_timeout_seconds", 0.5)

    def late(self, *, then_answer: bool = False) -> None:
        """Publish the one held command; with `then_answer`, the hub answers in time again."""
        wait_until(lambda: self.held, 10, "a command held back")
        [(hub_id, command)] = self.held
        self.held.clear()
        if then_answer:
            self.monkeypatch.undo()
        self.publish(hub_id, command)


def read_now_once(page: Page) -> Callable[[Request], bool]:
    """The page's first long-poll of its entry answers at once (`wait=0`), however little
    has changed. Returns what picks out the page's second long-poll, which it sends once
    it has shown what the first found (the entry where it was)."""
    polls: list[str] = []

    def polled(url: str) -> bool:
        return "/entries/" in url and "seen=" in url

    def at_once(route: Route) -> None:
        route.continue_(url=route.request.url.replace("wait=20", "wait=0"))

    def second_poll(request: Request) -> bool:
        if polled(request.url):
            polls.append(request.url)
        return len(polls) == 2

    page.route(polled, at_once, times=1)
    return second_poll


def shows(page: Page, step: Any) -> None:
    expect(headline(page)).to_have_text(step.headline, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#detail")).to_have_text(step.detail)


def test_the_courier_app_says_the_door_has_not_answered_and_carries_on(
    live: Any,
    world: demo.World,
    phones: Callable[..., Watched],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = world.homes[0]
    demo.book(world, home, ["PKG-LATE"])
    watched = phones("late-hub", home)
    page = watched.page
    sign_in(watched)
    open_stop(page, "Home 1")
    hub = SilentHub(live, monkeypatch)

    # The request: the hub does not answer within the wait.
    with page.expect_request(read_now_once(page)):
        with page.expect_response("**/courier/api/entries") as asked:
            request_entry(page, "PKG-LATE")
        assert asked.value.status == 202
        shows(page, courier_progress.LATE)
        expect(page.locator("#outcome")).to_have_attribute("data-tone", "warn")
    shows(page, courier_progress.LATE)  # the entry is where it was: still not answered

    # The hub answers late with its challenge; the page signs it; the proof goes
    # unanswered in time too.
    with page.expect_response("**/courier/api/entries/*/unlock") as proved:
        hub.late()
    assert proved.value.status == 202
    assert proved.value.json()["state"] == "authorized"
    shows(page, courier_progress.LATE)
    assert unlock_calls(world) == 0

    # The hub unlocks after all: the page carries on, with nothing signed twice.
    hub.late(then_answer=True)
    expect(headline(page)).to_have_text("Door unlocked — go in", timeout=LIVE_TIMEOUT_MS)
    assert unlock_calls(world) == 1
    assert [url for url, *_ in watched.responses if url.endswith("/unlock")] == [proved.value.url]


def _guest_at_the_door(
    live: Any, world: demo.World, box: Mailbox, pages: Callable[[str, ViewportSize], Watched]
) -> Watched:
    """An invited guest, signed in on a phone, on the page of their access."""
    home = world.homes[0]
    invite_guest(home, GUEST, "Lola")
    accept(live.url, mailed_link(box, "You are invited to Home 1", GUEST), GUEST).close()
    watched = pages("guest-late-hub", PHONE)
    guest_sign_in(watched, GUEST)
    return watched


def test_the_guest_app_says_the_door_has_not_answered_and_carries_on(
    live: Any,
    world: demo.World,
    mailbox: tuple[Mailbox, int],
    pages: Callable[[str, ViewportSize], Watched],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watched = _guest_at_the_door(live, world, mailbox[0], pages)
    page = watched.page
    hub = SilentHub(live, monkeypatch)

    with page.expect_request(read_now_once(page)):
        with page.expect_response("**/guest/api/visits") as asked:
            open_door(page, "Home 1 · Front door")
        assert asked.value.status == 202
        shows(page, visitor_progress.LATE)
    shows(page, visitor_progress.LATE)

    with page.expect_response("**/guest/api/visits/*/unlock") as proved:
        hub.late()
    assert proved.value.status == 202
    shows(page, visitor_progress.LATE)

    hub.late(then_answer=True)
    expect(headline(page)).to_have_text("Door unlocked — come in", timeout=LIVE_TIMEOUT_MS)
    assert unlock_calls(world) == 1


def test_a_guest_entry_ended_while_the_phone_signs_shows_how_it_ended(
    live: Any,
    world: demo.World,
    mailbox: tuple[Mailbox, int],
    pages: Callable[[str, ViewportSize], Watched],
) -> None:
    watched = _guest_at_the_door(live, world, mailbox[0], pages)
    page = watched.page

    def expired_meanwhile(route: Route) -> None:
        # The entry's grant runs out just as this phone proves: the service's sweep ends
        # it, and the proof is refused (409), the entry no longer waiting for one.
        later = datetime.now(UTC) + timedelta(hours=1)
        live.runtime.writer.submit(lambda tx: expire_stale(tx, now=later)).result(10)
        route.continue_()

    page.route("**/guest/api/visits/*/unlock", expired_meanwhile, times=1)
    with page.expect_response("**/guest/api/visits/*/unlock") as proved:
        open_door(page, "Home 1 · Front door")
    assert proved.value.status == 409

    expect(headline(page)).to_have_text("The door did not answer", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#detail")).to_have_text(
        "The door did not answer in time; try again in a minute."
    )
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
    assert unlock_calls(world) == 0
    watched.errors[:] = [e for e in watched.errors if "status of 409" not in e]
