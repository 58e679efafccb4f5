"""The resident's journeys added with approvals, preferences and two-step sign-in, in
Debian's Chromium (Playwright), at 360 px and 1280 px, with a screenshot of each step in
`artifacts/`, the same accessibility and layout checks as `test_journeys`, and no console
errors:

- approve an entry: the home asks each time; a courier asks to come in; the approval
  appears on the phone's approvals page and on the desktop's home page without a reload,
  with its countdown; the phone approves; the door unlocks for the courier.
- change preferences: wrong values are named by field; the saved preferences, the closed
  days and "not today" are what the API then reports.
- hub setup: add a home, the claim code, the hub coming online on the hub page, then a
  first unlock from there (after re-entering the password).
- two-step sign-in: turn it on (after re-entering the password) with the manual key,
  confirm with a code, keep the recovery codes; the next sign-in asks for a code.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from doorstep import demo
from doorstep.accounts import totp
from doorstep.homes.models import Home

from .conftest import DESKTOP, PHONE, RunningHub, Watched
from .support import PASSWORD, new_email
from .test_journeys import LIVE_TIMEOUT_MS, assert_headers, check_page, live_field, sign_in_by_form

RESIDENT = "resident1@doorstep.test"


def home_zone(live: Any, home_id: str) -> str:
    with live.sessions() as session:
        home = session.get(Home, home_id)
        assert home is not None
        return home.timezone


# the world's resident (demo.PASSWORD, the same)


def _ask_each_time(home: demo.Home, **changes: Any) -> None:
    current = home.resident.call("GET", f"/v1/homes/{home.id}/preferences")
    home.resident.call(
        "PUT",
        f"/v1/homes/{home.id}/preferences",
        json={**current, "approval_mode": "ask", **changes},
    )


def test_approve_an_entry_live_and_the_door_unlocks(
    live: Any, world: demo.World, pages: Callable[[str, ViewportSize], Watched]
) -> None:
    home, courier = world.homes[0], world.couriers[0][1]
    _ask_each_time(home, approval_timeout_seconds=600)
    phone, desktop = pages("approve-phone", PHONE), pages("approve-desktop", DESKTOP)
    sign_in_by_form(phone.page, RESIDENT)
    sign_in_by_form(desktop.page, RESIDENT)
    phone.page.get_by_role("link", name="Approvals").click()
    expect(phone.page.get_by_text("Nobody is waiting.")).to_be_visible()
    check_page(phone, "01-nobody-waiting")
    desktop.page.goto(f"/homes/{home.id}")
    expect(desktop.page.locator('[data-live-section="approvals"]')).to_be_hidden()
    for watched in (phone, desktop):
        watched.page.evaluate("window.journeyMark = 'not reloaded'")

    # The courier asks; the entry waits for the resident, on both screens, live.
    delivery = demo.book(world, home, ["PKG-ASK"])
    entry = demo.request_entry(courier, delivery["id"], "PKG-ASK", home.latitude, home.longitude)
    assert entry["state"] == "awaiting_approval"
    for watched in (phone, desktop):
        card = watched.page.locator(f'[data-approval="{entry["id"]}"]')
        expect(card).to_contain_text(
            "Casey Courier (Parcelly) is at the door", timeout=LIVE_TIMEOUT_MS
        )
        expect(card).to_contain_text(re.compile("(Home 1, front|Front) door, parcel PKG-ASK"))
        expect(card.locator("time[data-countdown]")).to_have_text(re.compile(r"^\d+:\d\d left$"))
        expect(card.locator("[data-live-view-slot]")).to_have_count(1)
        assert watched.page.evaluate("window.journeyMark") == "not reloaded"
    expect(phone.page.get_by_text("Nobody is waiting.")).to_be_hidden()
    first = desktop.page.locator('[data-live-list="entries"] li').first
    expect(first).to_contain_text("Waiting for your approval")
    check_page(phone, "02-courier-waiting")
    check_page(desktop, "01-home-courier-waiting")

    # Approve from the phone, by keyboard: the button is reachable and named.
    approve = phone.page.get_by_role("button", name="Approve Casey Courier")
    approve.focus()
    phone.page.keyboard.press("Enter")
    expect(phone.page.get_by_role("status")).to_have_text(
        "Approved: the door unlocks for the courier."
    )
    expect(phone.page.get_by_text("Nobody is waiting.")).to_be_visible()
    check_page(phone, "03-approved")

    # The courier's phone gets the door's challenge and proves itself: the door unlocks.
    unlocked = demo.prove_and_unlock(courier, demo.wait_challenge(courier, entry["id"]))
    assert unlocked["state"] == "unlocked"
    expect(desktop.page.locator('[data-live-section="approvals"]')).to_be_hidden(
        timeout=LIVE_TIMEOUT_MS
    )
    expect(live_field(desktop.page, "lock:front")).to_have_text("Unlocked", timeout=LIVE_TIMEOUT_MS)
    expect(first).to_contain_text("Door unlocked")
    assert desktop.page.evaluate("window.journeyMark") == "not reloaded"
    check_page(desktop, "02-home-unlocked")
    for watched in (phone, desktop):
        assert_headers(watched, live.url)


@pytest.mark.slow
def test_change_preferences_as_the_api_then_reports(
    live: Any, world: demo.World, pages: Callable[[str, ViewportSize], Watched]
) -> None:
    home = world.homes[0]
    for name, viewport in (("prefs-phone", PHONE), ("prefs-desktop", DESKTOP)):
        watched = pages(name, viewport)
        sign_in_by_form(watched.page, RESIDENT)
        watched.page.goto(f"/homes/{home.id}")
        watched.page.get_by_role("link", name="Delivery preferences").click()
        expect(watched.page.get_by_role("heading", name="Delivery preferences")).to_be_visible()
        check_page(watched, "01-preferences")
    page = watched.page  # the desktop from here on; the phone took its screenshot

    # Wrong values: each field says what to fix (422), and nothing is saved.
    watched.expect_status(422)
    page.get_by_label("Ask me each time").check()
    page.get_by_label("Time to answer, in seconds").fill("5")
    page.get_by_label("Pets").fill("x" * 501)
    page.get_by_role("button", name="Save preferences").click()
    timeout = page.get_by_label("Time to answer, in seconds")
    expect(timeout).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#approval_timeout_seconds-error")).to_have_text(
        "Enter a whole number of seconds between 30 and 900."
    )
    expect(page.locator("#pet_notes-error")).to_have_text("Keep pet notes to 500 characters.")
    check_page(watched, "02-field-errors")
    assert home.resident.call("GET", f"/v1/homes/{home.id}/preferences")["approval_mode"] == "auto"

    # Right values: saved, and what the API reports.
    timeout.fill("90")
    page.get_by_label("Pets").fill("Rex the dog: keep the door shut")
    page.get_by_label("Where to put parcels").fill("On the hall table")
    page.get_by_label("Sunday").uncheck()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status")).to_have_text(
        "Saved. The next courier's request follows these preferences."
    )
    assert home.resident.call("GET", f"/v1/homes/{home.id}/preferences") == {
        "in_home_enabled": True,
        "allowed_weekdays": ["mon", "tue", "wed", "thu", "fri", "sat"],
        "approval_mode": "ask",
        "approval_timeout_seconds": 90,
        "pet_notes": "Rex the dog: keep the door shut",
        "placement_notes": "On the hall table",
    }

    # A vacation: the wrong way round first, then right.
    start = (datetime.now(UTC) + timedelta(days=20)).date()
    page.get_by_label("First day").fill(str(start + timedelta(days=3)))
    page.get_by_label("Last day").fill(str(start))
    page.get_by_role("button", name="Add days").click()
    expect(page.locator("#last_day-error")).to_have_text(
        "The last day cannot be before the first day."
    )
    page.get_by_label("First day").fill(str(start))
    page.get_by_label("Last day").fill(str(start + timedelta(days=3)))
    page.get_by_role("button", name="Add days").click()
    expect(page.get_by_role("status")).to_have_text("Added. No in-home deliveries on those days.")

    # Not today, in one tap.
    page.get_by_role("button", name="Not today").click()
    expect(page.get_by_role("status")).to_have_text("No in-home delivery for the rest of today.")
    expect(page.get_by_text("No in-home delivery today", exact=True)).to_be_visible()
    check_page(watched, "03-saved")
    closures = home.resident.call("GET", f"/v1/homes/{home.id}/closures")
    today = str(datetime.now(ZoneInfo(home_zone(live, home.id))).date())
    assert sorted((c["kind"], c["first_day"], c["last_day"]) for c in closures) == [
        ("not_today", today, today),
        ("vacation", str(start), str(start + timedelta(days=3))),
    ]

    # Removing the vacation leaves "not today".
    page.get_by_role("button", name=re.compile("^Remove vacation")).click()
    expect(page.get_by_role("status")).to_have_text("Removed.")
    kinds = [c["kind"] for c in home.resident.call("GET", f"/v1/homes/{home.id}/closures")]
    assert kinds == ["not_today"]


def _code_for(page: Page, at: datetime) -> str:
    key = page.locator("#totp-key").inner_text().replace(" ", "")
    secret = base64.b32decode(key + "=" * (-len(key) % 8))
    return totp.totp(secret, at.timestamp())


@pytest.mark.slow
def test_turn_on_two_step_sign_in_and_sign_in_with_a_recovery_code(
    live: Any, web_clients: Any, pages: Callable[[str, ViewportSize], Watched]
) -> None:
    email = new_email("twostep")
    web_clients().sign_up(email)
    phone = pages("totp-phone", PHONE)
    page = phone.page
    sign_in_by_form(page, email)
    page.get_by_role("link", name="Security").click()
    expect(page.get_by_text("Off", exact=True)).to_be_visible()
    page.get_by_role("button", name="Set up an authenticator app").click()

    # It asks for the password first; a wrong one is named (422).
    phone.expect_status(422)
    page.wait_for_url("**/account/reauth?next=/account/security")
    page.get_by_label("Password").fill("not my password")
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("#password-error")).to_have_text("That is not your password.")
    check_page(phone, "01-reauth-wrong-password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/account/security")
    page.get_by_role("button", name="Set up an authenticator app").click()

    # The key, typed by hand (no QR code), and the otpauth link for apps on this phone.
    expect(page.locator("#totp-key")).to_have_text(re.compile(r"^([A-Z2-7]{4} ?)+$"))
    uri = page.locator("#totp-uri").get_attribute("href") or ""
    assert uri.startswith("otpauth://totp/Doorstep:") and "issuer=Doorstep" in uri
    check_page(phone, "02-setup")
    page.get_by_label("Code from the app").fill(
        "000000" if _code_for(page, datetime.now(UTC)) != "000000" else "111111"
    )
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#code-error")).to_contain_text("That code is not right.")
    page.get_by_label("Code from the app").fill(_code_for(page, datetime.now(UTC)))
    page.get_by_role("button", name="Turn on").click()
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", c) for c in codes)
    check_page(phone, "03-recovery-codes")
    page.get_by_role("link", name="Done").click()
    expect(page.get_by_text("10 recovery codes left.", exact=False)).to_be_visible()

    # Signed out, the password alone is no longer enough; a recovery code is, once.
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/signin/code")
    page.get_by_label("Code").fill("12345")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#code-error")).to_contain_text("That code is not right")
    check_page(phone, "04-code-wrong")
    page.get_by_label("Code").fill(codes[0].upper())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/homes")
    page.goto("/account/security")
    expect(page.get_by_text("9 recovery codes left.", exact=False)).to_be_visible()
    check_page(phone, "05-security-on")


@pytest.mark.slow
def test_account_pages_at_phone_and_desktop_sizes(
    live: Any, web_clients: Any, pages: Callable[[str, ViewportSize], Watched]
) -> None:
    email = new_email("pages")
    web_clients().sign_up(email)
    for name, viewport in (("account-phone", PHONE), ("account-desktop", DESKTOP)):
        watched = pages(name, viewport)
        page = watched.page
        sign_in_by_form(page, email)
        page.get_by_role("link", name="Approvals").click()
        expect(page.get_by_text("Nobody is waiting.")).to_be_visible()
        check_page(watched, "01-approvals-empty")
        page.get_by_role("link", name="Security").click()
        expect(page.locator(".session")).to_have_count(2 if name == "account-desktop" else 1)
        expect(page.get_by_text("This session expires")).to_be_visible()
        check_page(watched, "02-security")
        page.get_by_role("link", name="Email notifications").click()
        started = page.get_by_label("A courier is let in")
        was_on = name == "account-phone"  # the phone turns it off, the desktop on again
        expect(started).to_be_checked(checked=was_on)
        expect(page.get_by_label("Something is wrong (always on)")).to_be_disabled()
        started.set_checked(not was_on)
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_have_text(
            "Saved. The next emails follow these choices."
        )
        expect(page.get_by_label("A courier is let in")).to_be_checked(checked=not was_on)
        expect(page.get_by_label("A delivery is over")).to_be_checked()
        check_page(watched, "03-notifications")
        page.goto("/account/reauth?next=/account/security")
        expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
        check_page(watched, "04-reauth")


@pytest.mark.slow
def test_hub_setup_ends_with_a_first_unlock_from_the_hub_page(
    live: Any,
    web_clients: Any,
    hubs: Callable[[str, Path, str], RunningHub],
    pages: Callable[[str, ViewportSize], Watched],
    tmp_path: Path,
) -> None:
    email = new_email("setup")
    web_clients().sign_up(email)
    phone = pages("setup-phone", PHONE)
    page = phone.page
    sign_in_by_form(page, email)
    page.get_by_role("link", name="Add a home").click()
    page.get_by_label("Name").fill("Setup Flat")
    page.get_by_label("Street address").fill("3 Setup Street")
    page.get_by_label("Latitude").fill("51.5")
    page.get_by_label("Longitude").fill("-0.12")
    page.get_by_label("Time zone").select_option("Europe/London")
    page.get_by_role("button", name="Add home").click()
    page.wait_for_url("**/hub")
    home_id = page.url.split("/")[-2]
    page.get_by_role("button", name="Create a claim code").click()
    code = page.locator("#claim-code").inner_text()
    try_it = page.get_by_role("link", name="unlock your door from here")
    expect(try_it).to_be_hidden()
    hubs(live.url, tmp_path / "hub", code)

    # The hub comes online on this page, live, and offers the first test.
    expect(live_field(page, "hub")).to_have_text("Online", timeout=LIVE_TIMEOUT_MS)
    expect(try_it).to_be_visible()
    check_page(phone, "01-hub-online")
    try_it.click()
    page.get_by_role("button", name="Unlock Front door").click()
    page.wait_for_url("**/account/reauth?next=**")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"**/homes/{home_id}/unlock")
    page.get_by_role("button", name="Unlock Front door").click()
    expect(page.locator("#outcome")).to_contain_text("Unlocked.")
    check_page(phone, "02-first-unlock")
    page.goto(f"/homes/{home_id}")
    expect(live_field(page, "lock:front-door")).to_have_text("Unlocked")
