"""The resident's "Lock now" in Debian's Chromium (Playwright), at 360 px and 1280 px, with
the same accessibility and layout checks as `test_journeys`, a screenshot of each step in
`artifacts/`, and no console errors:

- on the phone, after a remote unlock nobody used: Lock now, no password asked; the page
  says locked once the hub has verified it, and the home page shows the lock Locked.
- on the desktop, with the door standing open: Lock now is refused with the reason, and
  the bolt is never asked to move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import ViewportSize, expect

from doorstep import demo

from .conftest import DESKTOP, PHONE, Watched
from .test_journeys import LIVE_TIMEOUT_MS, check_page, live_field, sign_in_by_form

RESIDENT = "resident1@doorstep.test"  # the world's resident (demo.PASSWORD, the same)


def _lock(world: demo.World) -> Any:
    hub = world.homes[0].hub_process
    assert hub is not None
    return hub.lock  # type: ignore[attr-defined]


def test_lock_now_from_the_phone_then_refused_with_the_door_open_on_the_desktop(
    live: Any, world: demo.World, pages: Callable[[str, ViewportSize], Watched]
) -> None:
    home = world.homes[0]
    entry = home.resident.call(
        "POST", f"/v1/homes/{home.id}/doors/front/unlock", json={"password": demo.PASSWORD}
    )
    assert entry["state"] == "unlocked"
    phone = pages("lock-phone", PHONE)
    page = phone.page
    sign_in_by_form(page, RESIDENT)
    page.goto(f"/homes/{home.id}")
    expect(live_field(page, "lock:front")).to_have_text("Unlocked", timeout=LIVE_TIMEOUT_MS)
    page.get_by_role("link", name="Unlock a door from here").click()
    check_page(phone, "01-doors")

    # No password asked: the answer is the hub's verified lock.
    page.get_by_role("button", name="Lock Front door now").click()
    page.wait_for_url(f"**/homes/{home.id}/doors/front/lock")
    outcome = page.locator("#outcome")
    expect(outcome).to_have_attribute("role", "status")
    expect(outcome).to_contain_text("Locked. The hub checked that the bolt is thrown")
    assert _lock(world).status().secure
    check_page(phone, "02-locked")
    page.goto(f"/homes/{home.id}")
    expect(live_field(page, "lock:front")).to_have_text("Locked", timeout=LIVE_TIMEOUT_MS)
    check_page(phone, "03-home-locked")

    # Someone left by the back, the front door stands open: refused, and said why.
    home.door("manual_unlock")
    home.door("open_door")
    desktop = pages("lock-desktop", DESKTOP)
    desktop.expect_status(409)
    sign_in_by_form(desktop.page, RESIDENT)
    desktop.page.goto(f"/homes/{home.id}/unlock")
    desktop.page.get_by_role("button", name="Lock Front door now").click()
    refused = desktop.page.locator("#outcome")
    expect(refused).to_have_attribute("role", "alert")
    expect(refused).to_contain_text("Not locked: the door did not lock (door_open)")
    expect(refused).to_contain_text("a bolt cannot be thrown into an open door")
    check_page(desktop, "01-door-open-refused")
    assert _lock(world).lock_calls == 1  # the phone's lock only
    assert _lock(world).status().lock_state.name == "UNLOCKED"
