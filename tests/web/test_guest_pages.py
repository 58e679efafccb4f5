"""The resident gives and revokes guests' access in Debian's Chromium, at 360 px and
1280 px, with a screenshot of each step, the accessibility and layout checks of
`test_journeys`, and no console errors:

- a form sent half-filled names what to fix;
- a keypad code for a dog walker is shown once; the door's hub programs it (the page
  says "Ready at the door") and the simulated lock opens with it; revoked, the hub
  clears it and the lock refuses it;
- an app guest is invited by email;
- "revoke everything now" asks for the password first, then revokes every grant.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, ViewportSize, expect

from doorstep import demo

from .conftest import DESKTOP, PHONE, Watched
from .support import PASSWORD
from .test_journeys import LIVE_TIMEOUT_MS, check_page, sign_in_by_form

RESIDENT = "resident1@doorstep.test"


def _reload_until(page: Page, text: str) -> None:
    """The list is not live: reload (bounded) until the hub's report shows."""
    locator = page.get_by_text(text).first
    for _ in range(40):
        if locator.is_visible():
            return
        page.wait_for_timeout(250)
        page.reload()
    expect(locator).to_be_visible(timeout=LIVE_TIMEOUT_MS)


def test_give_a_keypad_code_and_an_app_invitation_then_revoke_them(
    live: Any, world: demo.World, pages: Callable[[str, ViewportSize], Watched]
) -> None:
    home = world.homes[0]
    for size, name in ((PHONE, "phone"), (DESKTOP, "desktop")):
        watched = pages(f"guests-{name}", size)
        page = watched.page
        sign_in_by_form(page, RESIDENT)
        page.goto(f"/homes/{home.id}")
        page.get_by_role("link", name="Guests and providers").click()
        if name == "phone":
            expect(page.get_by_text("Nobody but couriers comes in.")).to_be_visible()
            check_page(watched, "01-empty")
            # Half-filled: no name, an app guest without an email.
            watched.expect_status(422)
            page.get_by_role("button", name="Give access").click()
            expect(page.locator("#label-error")).to_be_visible()
            check_page(watched, "02-errors")
        else:
            check_page(watched, "01-list")
            continue

        # A keypad code for the dog walker: shown once.
        page.get_by_label("Name").fill("Dog walker")
        page.get_by_label("With a keypad code").check()
        page.get_by_label("Any time").check()
        watched.expect_status(201)
        page.get_by_role("button", name="Give access").click()
        code = page.locator("#new-code")
        expect(code).to_have_text(re.compile(r"^\d{6}$"))
        pin = code.inner_text()
        assert pin.isdigit() and len(pin) == 6
        check_page(watched, "03-code-shown-once")
        page.goto(f"/homes/{home.id}/guests")
        expect(page.locator("#new-code")).to_have_count(0)
        _reload_until(page, "Ready at the door")
        assert home.type_code(pin)["granted"] is True

        # An app guest, invited by email.
        page.get_by_label("Name").fill("Ana")
        page.get_by_label("With the Doorstep app").check()
        page.get_by_label("Their email").fill("ana@example.org")
        page.get_by_label("Every week, on some days").check()
        page.get_by_label("Sat").check()
        page.get_by_label("From", exact=True).fill("10:00")
        page.get_by_label("Until", exact=True).fill("12:00")
        page.get_by_role("button", name="Give access").click()
        expect(page.locator("#created")).to_contain_text("We emailed an invitation to ana@")
        check_page(watched, "04-invited")

        # Revoke the code: the hub clears it, the lock refuses it.
        page.goto(f"/homes/{home.id}/guests")
        page.get_by_role("button", name="Revoke Dog walker").click()
        expect(page.get_by_role("status")).to_contain_text("Revoked.")
        _reload_until(page, "Cleared at the door")
        assert home.type_code(pin)["error"] == "invalid_credential"
        check_page(watched, "05-revoked")

        # Everything: the password first.
        page.get_by_role("button", name="Revoke everything now").click()
        page.wait_for_url("**/account/reauth?next=**")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url(f"**/homes/{home.id}/guests")
        page.get_by_role("button", name="Revoke everything now").click()
        expect(page.get_by_role("status")).to_contain_text("Every guest and appointment")
        check_page(watched, "06-revoked-everything")
    listed = home.resident.call("GET", f"/v1/homes/{home.id}/grants")
    assert sorted(g["label"] for g in listed) == ["Ana", "Dog walker"]
    assert all(g["revoked_at"] for g in listed)


def test_remote_unlock_asks_for_the_password_first(
    live: Any, world: demo.World, pages: Callable[[str, ViewportSize], Watched]
) -> None:
    home = world.homes[0]
    hub = home.hub_process
    assert hub is not None
    for size, name in ((PHONE, "phone"), (DESKTOP, "desktop")):
        watched = pages(f"unlock-{name}", size)
        page = watched.page
        sign_in_by_form(page, RESIDENT)
        page.goto(f"/homes/{home.id}")
        page.get_by_role("link", name="Unlock a door from here").click()
        check_page(watched, "01-doors")
        if name == "desktop":
            continue
        page.get_by_role("button", name="Unlock Front door").click()
        page.wait_for_url("**/account/reauth?next=**")
        assert hub.lock.unlock_calls == 0
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url(f"**/homes/{home.id}/unlock")
        page.get_by_role("button", name="Unlock Front door").click()
        expect(page.locator("#outcome")).to_contain_text("Unlocked.")
        check_page(watched, "02-unlocked")
        assert hub.lock.unlock_calls == 1
    home.door("open_door")
    home.door("close_door")
    done = demo.wait_entry(home.resident, _remote_entry(home), "done")
    assert (done["state"], done["method"]) == ("done", "remote")


def _remote_entry(home: demo.Home) -> str:
    for record in home.resident.call("GET", f"/v1/homes/{home.id}/audit"):
        if record["action"] == "entry:authorized" and record["data"].get("purpose") == "resident":
            return str(record["subject"])
    raise AssertionError("no remote entry")
