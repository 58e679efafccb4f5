"""The resident's journeys in Debian's Chromium (Playwright): sign up, sign in (by
keyboard), add a home, create the hub's claim code, enroll a hub with it and watch it come
online; watch a delivery happen live (the carrier books, the courier asks to enter, the
door opens and closes) without reloading, from the server's event stream; read the
timeline and its audit records; sign out everywhere (after re-entering the password). At
360 px (a phone) and 1280 px (a desktop), with screenshots of each step in `artifacts/`,
no console errors, labelled controls, readable contrast, no sideways scrolling, and the
security headers on every response."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, ViewportSize, expect

from doorstep import demo
from doorstep.web.security import CONTENT_SECURITY_POLICY

from .conftest import DESKTOP, PHONE, RunningHub, Watched
from .support import PASSWORD, new_email

LATITUDE, LONGITUDE = 51.5072, -0.1276
LIVE_TIMEOUT_MS = 20_000

# Every text node's contrast against its nearest opaque background (WCAG 2 formula);
# returns what falls under 4.5:1. Visible elements with text of their own only.
_CONTRAST = """() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const channel = (v) => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  const lum = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => { for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const low = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.getClientRects().length || el.closest('[hidden]')) continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const a = lum(parse(getComputedStyle(el).color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const text = el.textContent.trim().slice(0, 30);
    if (ratio < 4.5) low.push(`${el.tagName} "${text}" ${ratio.toFixed(2)}`);
  }
  return low;
}"""

_UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter((el) => !el.labels || el.labels.length === 0).map((el) => el.name || el.id)"""

_NAMELESS_BUTTONS = """() => [...document.querySelectorAll('button, a[href]')]
  .filter((el) => !el.textContent.trim() && !el.getAttribute('aria-label'))
  .map((el) => el.outerHTML)"""
_FOCUSED = "document.activeElement.id || document.activeElement.textContent.trim()"


def check_page(watched: Watched, step: str) -> Path:
    """Accessibility and layout checks on the current page, then its screenshot."""
    page = watched.page
    assert page.evaluate(_UNLABELLED) == [], step
    assert page.evaluate(_NAMELESS_BUTTONS) == [], step
    assert page.evaluate(_CONTRAST) == [], step
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{step}: {overflow}px of sideways scrolling"
    assert page.locator("h1").count() == 1, step
    return watched.shot(step)


def assert_headers(watched: Watched, origin: str) -> None:
    ours = [(url, kind, h) for url, kind, h in watched.responses if url.startswith(origin)]
    assert {kind for _, kind, _ in ours} >= {"document", "script", "stylesheet", "fetch"}
    assert "eventsource" in {kind for _, kind, _ in ours}  # live by stream, not by polling
    for url, _kind, headers in ours:
        assert headers.get("content-security-policy") == CONTENT_SECURITY_POLICY, url
        assert headers.get("x-content-type-options") == "nosniff", url


def sign_in_by_keyboard(page: Page, email: str) -> None:
    """Tab from the top of the sign-in page to each control, type, and press Enter."""
    page.goto("/signin")
    reached = []
    for _ in range(6):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")
        )
        if reached[-1] == "email":
            break
    assert reached[0] == "Skip to content" and reached[-1] == "email", reached
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Sign in"
    page.keyboard.press("Enter")
    page.wait_for_url("**/homes")


def sign_in_by_form(page: Page, email: str) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/homes")


def live_field(page: Page, key: str) -> Any:
    return page.locator(f'[data-live="{key}"]')


def test_sign_up_enroll_a_hub_watch_a_delivery_and_sign_out_everywhere(
    live: Any,
    carrier_world: demo.World,
    hubs: Callable[[str, Path, str], RunningHub],
    pages: Callable[[str, ViewportSize], Watched],
    tmp_path: Path,
) -> None:
    email = new_email("journey")
    phone = pages("phone", PHONE)
    page = phone.page

    # Sign up, then sign in by keyboard alone.
    page.goto("/signup")
    page.get_by_label("Your name").fill("Robin Resident")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    check_page(phone, "01-sign-up")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your account is ready. Sign in to add your home."
    )
    sign_in_by_keyboard(page, email)
    expect(page.get_by_text("No homes yet.")).to_be_visible()
    check_page(phone, "02-homes-empty")

    # Add a home; the next step is its hub.
    page.get_by_role("link", name="Add a home").click()
    page.get_by_label("Name").fill("Rose Cottage")
    page.get_by_label("Street address").fill("12 Rose Lane")
    page.get_by_label("Latitude").fill(str(LATITUDE))
    page.get_by_label("Longitude").fill(str(LONGITUDE))
    page.get_by_label("Time zone").select_option("Europe/London")
    check_page(phone, "03-add-home")
    page.get_by_role("button", name="Add home").click()
    page.wait_for_url("**/hub")
    home_id = page.url.split("/")[-2]
    expect(live_field(page, "hub")).to_have_text("No hub yet")

    # Create the claim code; enroll a hub with it; the page shows the hub coming online.
    page.get_by_role("button", name="Create a claim code").click()
    code = page.locator("#claim-code").inner_text()
    command = page.locator("#hub-command").inner_text()
    assert command.replace("\\\n", "").split() == [
        f"DOORSTEP_HUB_CLAIM_CODE={code}",  # not an argument: `ps` would show it
        *("doorstep", "hub", "--data-dir", "hub-data", "--service", live.url),
    ]
    expect(live_field(page, "hub")).to_have_text("Waiting for the hub to use its claim code")
    check_page(phone, "04-claim-code")
    page.evaluate("window.journeyMark = 'not reloaded'")
    hub_dir = tmp_path / "hub"
    hubs(live.url, hub_dir, code)
    expect(live_field(page, "hub")).to_have_text("Online", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.journeyMark") == "not reloaded"
    check_page(phone, "05-hub-online")

    # The resident lets the carrier book in-home deliveries (API; no page for it yet).
    with demo.Api.login(
        live.url, grant_type="password", username=email, password=PASSWORD
    ) as resident_api:
        resident_api.call(
            "POST",
            f"/v1/homes/{home_id}/carriers",
            201,
            json={"carrier_id": carrier_world.carrier_id},
        )
        hub_id = resident_api.call("GET", f"/v1/homes/{home_id}")["hubs"][0]["id"]
        home = demo.Home(home_id, hub_id, LATITUDE, LONGITUDE, hub_dir, resident_api)

        # The same resident on a desktop too.
        desktop = pages("desktop", DESKTOP)
        sign_in_by_form(desktop.page, email)
        check_page(desktop, "01-homes")

        # Both open the home page and watch a delivery happen.
        for watched in (phone, desktop):
            watched.page.goto(f"/homes/{home_id}")
            expect(live_field(watched.page, "hub")).to_have_text("Online")
            expect(watched.page.get_by_text("No entries yet.")).to_be_visible()
            watched.page.evaluate("window.journeyMark = 'not reloaded'")
        check_page(phone, "06-home-before-delivery")
        _deliver(live, carrier_world, home, phone, desktop)
        for watched in (phone, desktop):
            assert watched.page.evaluate("window.journeyMark") == "not reloaded"
        check_page(desktop, "02-home-delivered")

        # The timeline: who, how, when, outcome, flags and the audit records.
        for watched, step in ((phone, "10-activity"), (desktop, "03-activity")):
            watched.page.get_by_role("link", name="Full timeline with audit records").click()
            entry = watched.page.locator(".entry-full").first
            expect(entry).to_contain_text("Casey Courier (Parcelly)")
            expect(entry).to_contain_text("through the front door, parcel PKG-1")
            expect(entry).to_contain_text("Delivered; door locked and closed")
            entry.get_by_text("Audit records").click()
            audit = entry.locator(".audit li")
            expect(audit.first).to_contain_text("Delivery booked")
            for action in ("Entry authorized", "Entry unlocked", "Entry opened", "Entry done"):
                expect(entry.locator(".audit")).to_contain_text(action)
            expect(entry.locator(".audit")).to_contain_text("Delivery delivered")
            check_page(watched, step)

        desktop.page.goto(f"/homes/{home_id}/hub")
        check_page(desktop, "04-hub")
        desktop.page.goto("/account/security")
        sessions = desktop.page.locator(".session")
        expect(sessions).to_have_count(3)  # phone, desktop, API token
        expect(sessions.filter(has_text="Chrome on Linux")).to_have_count(2)
        expect(sessions.filter(has_text="API token or older session")).to_have_count(1)
        check_page(desktop, "05-security")

        # Sign out everywhere, from the phone: it asks for the password again first.
        page.get_by_role("link", name="Security").click()
        expect(page.get_by_text("This browser", exact=True)).to_have_count(1)
        check_page(phone, "11-security")
        page.get_by_role("button", name="Sign out everywhere").click()
        page.wait_for_url("**/account/reauth?next=/account/security")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url("**/account/security")
        page.get_by_role("button", name="Sign out everywhere").click()
        expect(page.get_by_role("status")).to_have_text("You are signed out on every device.")
        check_page(phone, "12-signed-out")
        desktop.page.reload()
        desktop.page.wait_for_url("**/signin")
        gone = httpx.get(f"{live.url}/v1/homes", headers=resident_api.http.headers)
        assert gone.status_code == 401
    for watched in (phone, desktop):
        assert_headers(watched, live.url)


def _deliver(
    live: Any, world: demo.World, home: demo.Home, phone: Watched, desktop: Watched
) -> None:
    courier = world.couriers[0][1]
    lock, door = "lock:front-door", "door:front-door"
    delivery = demo.book(world, home, ["PKG-1"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert entry["state"] == "unlocked"
    for watched in (phone, desktop):
        expect(live_field(watched.page, lock)).to_have_text("Unlocked", timeout=LIVE_TIMEOUT_MS)
        first = watched.page.locator('[data-live-list="entries"] li').first
        expect(first).to_contain_text("Door unlocked")
        expect(first).to_contain_text("Casey Courier (Parcelly)")
    check_page(phone, "07-unlocked")
    home.door("open_door")
    for watched in (phone, desktop):
        expect(live_field(watched.page, door)).to_have_text("Open", timeout=LIVE_TIMEOUT_MS)
        first = watched.page.locator('[data-live-list="entries"] li').first
        expect(first).to_contain_text("Door open")
    check_page(phone, "08-door-open")
    home.door("close_door")
    demo.wait_entry(courier, entry["id"], "done")
    for watched in (phone, desktop):
        expect(live_field(watched.page, lock)).to_have_text("Locked", timeout=LIVE_TIMEOUT_MS)
        expect(live_field(watched.page, door)).to_have_text("Closed")
        first = watched.page.locator('[data-live-list="entries"] li').first
        expect(first).to_contain_text("Delivered; door locked and closed")
        expect(watched.page.get_by_text("No entries yet.")).to_be_hidden()
    check_page(phone, "09-delivered")
