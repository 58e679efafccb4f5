"""The guest and provider app in Debian's Chromium (Playwright), at phone size (360x740)
and desktop size: a guest invited by the resident accepts from the mailed link (real
SMTP), sees their access (home, door, schedule in the home's time zone, uses left,
notes), and opens the door with the phone's key: the hub really unlocks, the test plays
the door open and shut, and the page ends on the verified relock without a reload. A
provider's admin invites a worker and assigns an appointment in the portal; the worker
accepts in the browser and opens the door; once deactivated (after a confirmation), the
worker is shown the denial and its advice, and their access no longer lists the home.
Screenshots in `artifacts/guest-*.png` and `artifacts/provider-*.png`; no console errors;
labelled controls, readable contrast, no sideways scrolling; CSP on everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from doorstep import demo
from doorstep.protocol.codes import COURIER_ADVICE, Reason
from doorstep.settings import NotifySettings
from doorstep.web.security import CONTENT_SECURITY_POLICY
from functional.conftest import Mailbox

from .conftest import DESKTOP, PHONE, Watched
from .test_journeys import check_page
from .visitors import (
    PASSWORD,
    book,
    invite_guest,
    london,
    mailed_link,
    sign_up_provider,
    smtp_server,
)

LIVE_TIMEOUT_MS = 20_000
GUEST_EMAIL = "ana@example.org"


@pytest.fixture(name="mailbox")
def _mailbox() -> Iterator[tuple[Mailbox, int]]:
    yield from smtp_server()


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1,
                          retry_base_seconds=0.2, retry_max_seconds=1.0)  # fmt: skip


def unlock_calls(world: demo.World) -> int:
    hub = world.homes[0].hub_process
    assert hub is not None
    return int(hub.lock.unlock_calls)  # type: ignore[attr-defined]


def accept_in_browser(watched: Watched, link: str, name: str, step: str) -> None:
    """Open the mailed link, choose a password, and land on the person's access."""
    page = watched.page
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Accept your invitation")
    expect(page.get_by_label("Choose a password")).to_be_visible()
    assert "#" not in page.url  # the token left the address bar (and history)
    page.get_by_label("Your name (optional)").fill(name)
    page.get_by_label("Choose a password").fill(PASSWORD)
    check_page(watched, step)
    page.get_by_role("button", name="Accept and sign in").click()
    page.wait_for_url("**/guest")
    expect(page.locator("#device-status")).to_have_text("This phone is registered for entries.")


def sign_in(watched: Watched, email: str) -> None:
    page = watched.page
    page.goto("/guest/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/guest")


def open_door(page: Page, title: str) -> None:
    page.get_by_role("link", name=f"Open the door: {title}").click()
    button = page.get_by_role("button", name="Open the door")
    expect(button).to_be_enabled()  # this phone's key is ready
    button.click()


def headline(page: Page) -> Any:
    return page.locator("#headline")


def walk_through_the_door(page: Page, world: demo.World, watched: Watched, step: str) -> str:
    """The door is unlocked for this page's person: in, shut, and the verified relock."""
    home = world.homes[0]
    expect(headline(page)).to_have_text("Door unlocked — come in", timeout=LIVE_TIMEOUT_MS)
    entry_id = page.locator("#entry").get_attribute("data-entry")
    assert entry_id
    check_page(watched, f"{step}-unlocked")
    home.door("open_door")
    expect(headline(page)).to_have_text(
        "Close the door behind you — it locks itself", timeout=LIVE_TIMEOUT_MS
    )
    home.door("close_door")
    expect(headline(page)).to_have_text("Door locked — all done", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#outcome")).to_have_attribute("data-tone", "ok")
    expect(page.get_by_role("link", name="Back to your access")).to_be_visible()
    check_page(watched, f"{step}-done")
    entry = home.resident.call("GET", f"/v1/entries/{entry_id}")
    assert entry["state"] == "done", entry
    assert home.door("status")["status"]["secure"] is True
    return entry_id


def assert_headers(watched: Watched, origin: str) -> None:
    ours = [(url, kind, h) for url, kind, h in watched.responses if url.startswith(origin)]
    assert {kind for _, kind, _ in ours} >= {"document", "script", "stylesheet", "fetch"}
    for url, kind, headers in ours:
        assert headers.get("content-security-policy") == CONTENT_SECURITY_POLICY, url
        assert headers.get("x-content-type-options") == "nosniff", url
        if kind == "document" and "location" not in headers:
            assert headers["permissions-policy"].endswith("geolocation=(self)"), url


@pytest.mark.slow
def test_an_invited_guest_accepts_in_the_browser_and_opens_the_door(
    live: Any,
    world: demo.World,
    mailbox: tuple[Mailbox, int],
    pages: Callable[[str, ViewportSize], Watched],
) -> None:
    box, _port = mailbox
    home = world.homes[0]
    starts, ends = london(-timedelta(hours=1)), london(timedelta(hours=3))
    notes = "Spare towels in the hall cupboard."
    grant = invite_guest(home, GUEST_EMAIL, "Ana", kind="range", starts_at=starts,
                         ends_at=ends, uses_limit=2, notes=notes)  # fmt: skip
    link = mailed_link(box, "You are invited to Home 1", GUEST_EMAIL)
    assert link.startswith(live.url + "/guest/accept#")

    watched = pages("guest-phone", PHONE)
    page = watched.page
    accept_in_browser(watched, link, "Ana Guest", "01-accept")

    # The access, as the home's clock says it.
    card = page.locator(".pass")
    expect(card).to_have_count(1)
    expect(card.get_by_role("heading")).to_have_text("Home 1 · Front door")
    zone = ZoneInfo("Europe/London")
    start = demo_local(starts, zone)
    expect(card.locator('[data-fact="when"]')).to_contain_text(start)
    expect(card.locator('[data-fact="when"]')).to_contain_text("Europe/London time")
    expect(card.locator('[data-fact="uses"]')).to_have_text("2")
    expect(card.locator('[data-note="notes"]')).to_contain_text("Spare towels")
    check_page(watched, "02-access")
    keys = guest_keys(live.url)
    assert len(keys) == 1 and keys[0]["label"].startswith("Doorstep guest app")

    # Open the door: the page asks, signs the door's challenge, and follows it.
    assert unlock_calls(world) == 0
    open_door(page, "Home 1 · Front door")
    expect(page.get_by_role("heading", level=1)).to_have_text("Home 1")
    walk_through_the_door(page, world, watched, "03")
    assert unlock_calls(world) == 1
    page.get_by_role("link", name="Back to your access").click()
    expect(page.locator('.pass [data-fact="uses"]')).to_have_text("1")
    assert_headers(watched, live.url)
    with demo.Api.login(live.url, grant_type="password", username=GUEST_EMAIL,
                        password=PASSWORD) as guest:  # fmt: skip
        assert [g["id"] for g in guest.call("GET", "/v1/me/grants")] == [grant["id"]]

    # The same, on a desktop, signed in with the password just chosen.
    desktop = pages("guest-desktop", DESKTOP)
    sign_in(desktop, GUEST_EMAIL)
    expect(desktop.page.locator(".pass")).to_have_count(1)
    check_page(desktop, "01-access")
    desktop.page.get_by_role("button", name="Sign out").click()
    expect(desktop.page.get_by_text("You are signed out.")).to_be_visible()


def demo_local(wall_clock: str, zone: ZoneInfo) -> str:
    """How the page writes a wall-clock time the resident entered: `Mon 23 Nov 2026, 16:05`."""
    local = datetime.fromisoformat(wall_clock).replace(tzinfo=zone)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"


def guest_keys(url: str) -> list[dict[str, Any]]:
    with demo.Api.login(url, grant_type="password", username=GUEST_EMAIL,
                        password=PASSWORD) as guest:  # fmt: skip
        keys: list[dict[str, Any]] = guest.call("GET", "/v1/me/device-keys")
    return keys


@pytest.mark.slow
def test_a_provider_assigns_a_worker_who_opens_the_door_until_deactivated(
    live: Any,
    world: demo.World,
    mailbox: tuple[Mailbox, int],
    pages: Callable[[str, ViewportSize], Watched],
) -> None:
    box, _port = mailbox
    home = world.homes[0]
    provider, api_admin = sign_up_provider(live.url, "Sparkle", "boss@sparkle.test")
    api_admin.close()
    appointment = book(home, provider["id"], notes="Please water the plants.")

    # The admin, on a desktop: the portal, with the appointment not yet assigned.
    admin = pages("provider-desktop", DESKTOP)
    sign_in(admin, "boss@sparkle.test")
    admin.page.get_by_role("link", name="Provider").click()
    admin.page.wait_for_url(f"**/provider/{provider['id']}")
    booked = admin.page.locator(f'[data-appointment="{appointment["id"]}"]')
    expect(booked).to_contain_text("Home 1 · Front door")
    expect(booked).to_contain_text("Please water the plants.")
    expect(booked.locator('[data-fact="worker"]')).to_have_text("Not assigned yet")
    check_page(admin, "01-portal")

    # Invite a worker by email.
    admin.page.get_by_label("Name").fill("Wes Worker")
    admin.page.get_by_label("Email").fill("wes@sparkle.test")
    admin.page.get_by_role("button", name="Send invitation").click()
    expect(admin.page.get_by_role("status").first).to_contain_text("Invitation sent")
    expect(admin.page.locator(".worker")).to_contain_text("Wes Worker")
    check_page(admin, "02-invited")
    link = mailed_link(box, "Join Sparkle on Doorstep", "wes@sparkle.test")

    # The worker accepts on the phone: nothing assigned yet.
    worker = pages("provider-worker-phone", PHONE)
    accept_in_browser(worker, link, "Wes Worker", "01-accept")
    expect(worker.page.get_by_text("No access right now.")).to_be_visible()
    expect(worker.page.get_by_role("link", name="Provider")).to_have_count(0)

    # The admin assigns the appointment; the worker sees it as their access.
    booked.get_by_label("Assign to").select_option(label="Wes Worker")
    booked.get_by_role("button", name="Assign").click()
    expect(admin.page.get_by_role("status").first).to_contain_text("Worker assigned")
    expect(booked.locator('[data-fact="worker"]')).to_have_text("Wes Worker")
    check_page(admin, "03-assigned")
    worker.page.reload()
    card = worker.page.locator(".pass")
    expect(card).to_contain_text("Please water the plants.")
    expect(card).to_contain_text("Sparkle")
    check_page(worker, "02-appointment")
    open_door(worker.page, "Home 1 · Front door")
    walk_through_the_door(worker.page, world, worker, "03")
    worker.page.get_by_role("link", name="Back to your access").click()
    worker.page.get_by_role("link", name="Open the door: Home 1 · Front door").click()
    expect(worker.page.get_by_role("button", name="Open the door")).to_be_enabled()

    # Deactivated, after a confirmation: the worker's next try, from the page still open,
    # is denied, with the advice; their access no longer shows the home.
    admin.page.get_by_role("link", name="Deactivate Wes Worker").click()
    expect(admin.page.get_by_role("heading", level=1)).to_have_text("Deactivate Wes Worker?")
    check_page(admin, "04-confirm")
    admin.page.get_by_role("button", name="Yes, deactivate Wes Worker").click()
    expect(admin.page.get_by_role("status").first).to_contain_text("Worker deactivated")
    expect(admin.page.locator(".worker")).to_contain_text("Deactivated")
    check_page(admin, "05-deactivated")
    calls = unlock_calls(world)
    worker.page.get_by_role("button", name="Open the door").click()
    expect(headline(worker.page)).to_have_text("The door stays locked", timeout=LIVE_TIMEOUT_MS)
    expect(worker.page.locator("#detail")).to_have_text(COURIER_ADVICE[Reason.VISITOR_INACTIVE])
    expect(worker.page.get_by_role("button", name="Try again")).to_be_visible()
    check_page(worker, "04-denied")
    assert unlock_calls(world) == calls
    worker.page.goto("/guest")
    expect(worker.page.get_by_text("No access right now.")).to_be_visible()
    expect(worker.page.get_by_text("Please water the plants.")).to_have_count(0)

    # A worker is no admin: the portal is "not found" to them.
    worker.expect_status(404)
    response = worker.page.goto(f"/provider/{provider['id']}")
    assert response is not None and response.status == 404
    expect(worker.page.get_by_role("heading", level=1)).to_have_text("Not found")
    assert_headers(worker, live.url)
