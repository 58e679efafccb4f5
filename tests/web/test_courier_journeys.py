"""The courier's app in Debian's Chromium (Playwright), on a phone-sized screen (390x844,
touch) with the phone's location granted at the home: sign in, the phone's key made and
registered (non-extractable), today's stops with the resident's notes, the parcel typed,
the knock confirmed, entry requested, the door's challenge signed in the browser, the
door really unlocked, played open and shut by the test, and "Delivered and locked"
without a reload. Also, at 360 px: the camera's barcode reader where the browser has one,
the "someone answered" handover, a wrong parcel denied with its advice (by keyboard
alone), a revoked key replaced; a resident's approval (across a reload) followed by a pet
abort ending "aborted"; and a failed relock's alert. Screenshots of each step in
`artifacts/courier-*.png`; no console errors; labelled controls, readable contrast, no
sideways scrolling; CSP on everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect
from sqlalchemy import select

from doorstep import demo
from doorstep.access.models import Entry
from doorstep.audit.models import AuditEvent
from doorstep.hub.agent import RelockPolicy
from doorstep.protocol.codes import COURIER_ADVICE, Reason
from doorstep.web.security import CONTENT_SECURITY_POLICY

from .conftest import Watched
from .support import PASSWORD
from .test_journeys import check_page

PHONE: ViewportSize = {"width": 390, "height": 844}
SMALL_PHONE: ViewportSize = {"width": 360, "height": 740}
COURIER_EMAIL = "casey@parcelly.test"
LIVE_TIMEOUT_MS = 20_000
FAST_RELOCK = RelockPolicy(
    retries=1, retry_seconds=0.2, deadline_seconds=1.0, door_open_seconds=60.0
)

# This phone's key record in IndexedDB, as the app keeps it, and whether WebCrypto lets
# anyone export its private half.
_STORED_KEY = """async (courierId) => {
  const db = await new Promise((resolve, reject) => {
    const opening = indexedDB.open("doorstep-courier");
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error);
  });
  const record = await new Promise((resolve, reject) => {
    const request = db.transaction("device-keys").objectStore("device-keys").get(courierId);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  db.close();
  const key = record.privateKey;
  let exported = "exported";
  try { await crypto.subtle.exportKey("jwk", key); }
  catch (error) { exported = error.name; }
  let raw = "exported";
  try { await crypto.subtle.exportKey("pkcs8", key); }
  catch (error) { raw = error.name; }
  return {
    id: record.id, type: key.type, extractable: key.extractable,
    algorithm: key.algorithm.name, curve: key.algorithm.namedCurve, usages: key.usages,
    exportJwk: exported, exportPkcs8: raw, fields: Object.keys(record).sort(),
  };
}"""


# A barcode reader and a camera for browsers without them (this Chromium has neither):
# the reader "sees" PKG-1 in whatever the camera shows.
_FAKE_CAMERA = """
window.BarcodeDetector = class {
  async detect() { return [{ rawValue: "PKG-1", format: "code_128" }]; }
};
if (navigator.mediaDevices) navigator.mediaDevices.getUserMedia = async () => {
  const canvas = document.createElement("canvas");
  canvas.width = 64; canvas.height = 48;
  canvas.getContext("2d").fillRect(0, 0, 64, 48);
  return canvas.captureStream(5);
};
"""
_FOCUSED = """() => { const el = document.activeElement;
  return el.type === "radio" ? `${el.name}:${el.value}` : el.id; }"""


@pytest.fixture
def phones(browser: Browser, live: Any) -> Iterator[Callable[..., Watched]]:
    """`open(name, home, viewport=PHONE)`: a phone-sized, touch page in a fresh context
    whose location is the home's (8 m accuracy) and granted. No console or page errors by
    the end."""
    contexts: list[BrowserContext] = []
    watched: list[Watched] = []

    def open_phone(name: str, home: demo.Home, viewport: ViewportSize = PHONE) -> Watched:
        context = browser.new_context(
            viewport=viewport,
            base_url=live.url,
            is_mobile=True,
            has_touch=True,
            geolocation={"latitude": home.latitude, "longitude": home.longitude, "accuracy": 8},
            permissions=["geolocation"],
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        item = Watched(page, f"courier-{name}")
        page.on("console", item.on_console)
        page.on("pageerror", item.on_page_error)
        page.on("response", item.on_response)
        watched.append(item)
        return item

    yield open_phone
    for context in contexts:
        context.close()
    for item in watched:
        assert item.errors == [], f"{item.name}: {item.errors}"


def courier_id(world: demo.World) -> str:
    return world.couriers[0][0]


def unlock_calls(world: demo.World) -> int:
    hub = world.homes[0].hub_process
    assert hub is not None
    return int(hub.lock.unlock_calls)  # type: ignore[attr-defined]


def sign_in(watched: Watched) -> None:
    page = watched.page
    page.goto("/courier/signin")
    page.get_by_label("Email").fill(COURIER_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    check_page(watched, "01-sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/courier")
    expect(page.locator("#device-status")).to_have_text("This phone is registered for entries.")


def open_stop(page: Page, home_name: str) -> None:
    page.get_by_role("link", name=home_name).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(home_name)


def request_entry(page: Page, barcode: str) -> None:
    page.get_by_label("Parcel barcode").fill(barcode)
    request = page.get_by_role("button", name="Request entry")
    expect(request).to_be_disabled()  # the knock is not confirmed yet
    page.get_by_label("I knocked or rang and nobody answered").check()
    expect(request).to_be_enabled()
    request.click()


def headline(page: Page) -> Any:
    return page.locator("#headline")


def shown_entry(page: Page) -> str:
    entry_id = page.locator("#entry").get_attribute("data-entry")
    assert entry_id
    return entry_id


def set_preferences(home: demo.Home, **changes: Any) -> None:
    current = home.resident.call("GET", f"/v1/homes/{home.id}/preferences")
    home.resident.call("PUT", f"/v1/homes/{home.id}/preferences", json={**current, **changes})


def assert_headers(watched: Watched, origin: str) -> None:
    ours = [(url, kind, h) for url, kind, h in watched.responses if url.startswith(origin)]
    assert {kind for _, kind, _ in ours} >= {"document", "script", "stylesheet", "fetch"}
    for url, kind, headers in ours:
        assert headers.get("content-security-policy") == CONTENT_SECURITY_POLICY, url
        assert headers.get("x-content-type-options") == "nosniff", url
        if kind == "document" and "location" not in headers:  # a page, not a redirect
            assert "geolocation=(self)" in headers["permissions-policy"], url


def test_a_courier_delivers_a_parcel_inside_on_a_phone(
    live: Any, world: demo.World, phones: Callable[..., Watched]
) -> None:
    home = world.homes[0]
    set_preferences(
        home, pet_notes="Friendly cat called Miso; keep the door shut.",
        placement_notes="On the hall table, not the floor.",
    )  # fmt: skip
    delivery = demo.book(world, home, ["PKG-1", "PKG-2"])
    watched = phones("journey", home)
    page = watched.page

    # Sign in: the page makes this phone's key and registers it.
    sign_in(watched)
    stored = page.evaluate(_STORED_KEY, courier_id(world))
    assert stored["fields"] == ["created", "id", "privateKey"]  # no public or raw key kept
    assert (stored["type"], stored["algorithm"], stored["curve"]) == ("private", "ECDSA", "P-256")
    assert stored["extractable"] is False and stored["usages"] == ["sign"]
    assert stored["exportJwk"] == "InvalidAccessError" == stored["exportPkcs8"]
    courier_api = world.couriers[0][1]
    keys = {key["id"]: key for key in courier_api.call("GET", "/v1/courier/device-keys")}
    assert stored["id"] in keys and keys[stored["id"]]["revoked_at"] is None
    assert keys[stored["id"]]["label"].startswith("Courier web app")

    # Today's stops, with the resident's notes up front.
    stop = page.locator(".stop")
    expect(stop).to_have_count(1)
    expect(stop).to_contain_text("Home 1")
    expect(stop).to_contain_text("2 parcels")
    expect(stop.locator('[data-note="pets"]')).to_contain_text("Friendly cat called Miso")
    expect(stop.locator('[data-note="placement"]')).to_contain_text("On the hall table")
    check_page(watched, "02-stops")

    # The stop: notes before anything else, then scan, knock, request.
    open_stop(page, "Home 1")
    notes = page.get_by_role("region", name="Before you go in")
    expect(notes).to_contain_text("Pets: Friendly cat called Miso; keep the door shut.")
    expect(notes).to_contain_text("Where the parcel goes: On the hall table, not the floor.")
    expect(page.locator("#camera")).to_be_hidden()  # no BarcodeDetector in this Chromium
    page.get_by_label("Parcel barcode").fill("PKG-2")
    check_page(watched, "03-stop-scanned")
    page.get_by_label("Parcel barcode").fill("")
    page.evaluate("window.journeyMark = 'not reloaded'")
    assert unlock_calls(world) == 0
    request_entry(page, "PKG-2")

    # The page signed the door's challenge with the phone's key; the hub unlocked.
    expect(headline(page)).to_have_text("Door unlocked — go in", timeout=LIVE_TIMEOUT_MS)
    assert unlock_calls(world) == 1
    entry_id = shown_entry(page)
    with live.sessions() as session:
        entry = session.get(Entry, entry_id)
        assert entry is not None
        assert (entry.delivery_id, entry.device_key_id) == (delivery["id"], stored["id"])
        proved = session.scalar(
            select(AuditEvent.action).where(
                AuditEvent.subject == entry_id, AuditEvent.action == "entry:proof_presented"
            )
        )
        assert proved is not None
    expect(page.get_by_role("button", name="Abort entry")).to_be_visible()
    check_page(watched, "04-unlocked")

    # The courier goes in; the door's own sensor tells the page.
    home.door("open_door")
    expect(headline(page)).to_have_text(
        "Close the door behind you — it locks itself", timeout=LIVE_TIMEOUT_MS
    )
    check_page(watched, "05-inside")

    # "Lock" is only a request: the page says to close the door and waits for the lock.
    page.get_by_role("button", name="Lock the door").click()
    expect(headline(page)).to_have_text("Locking…")
    expect(page.locator("#detail")).to_have_text(
        "Pull the door shut: it locks itself once it is closed."
    )
    check_page(watched, "06-locking")
    assert courier_api.call("GET", f"/v1/entries/{entry_id}")["state"] == "opened"

    home.door("close_door")
    expect(headline(page)).to_have_text("Delivered and locked", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#outcome")).to_have_attribute("data-tone", "ok")
    expect(page.get_by_role("link", name="Back to your stops")).to_be_visible()
    expect(page.get_by_role("button", name="Abort entry")).to_be_hidden()
    assert page.evaluate("window.journeyMark") == "not reloaded"
    check_page(watched, "07-delivered")
    assert courier_api.call("GET", f"/v1/entries/{entry_id}")["state"] == "done"
    assert home.door("status")["status"]["secure"] is True

    # Delivered: the stop has left today's list.
    page.get_by_role("link", name="Back to your stops").click()
    expect(page.get_by_text("No in-home stops today.")).to_be_visible()
    check_page(watched, "08-no-more-stops")
    assert_headers(watched, live.url)


def test_a_wrong_parcel_is_denied_with_its_advice_and_a_handover_needs_no_entry(
    live: Any, world: demo.World, phones: Callable[..., Watched]
) -> None:
    home = world.homes[0]
    demo.book(world, home, ["PKG-1"])
    watched = phones("denied", home, SMALL_PHONE)
    page = watched.page
    page.context.add_init_script(_FAKE_CAMERA)
    sign_in(watched)
    open_stop(page, "Home 1")

    # Where the browser reads barcodes (here a stand-in), the camera fills the field.
    page.get_by_role("button", name="Scan with the camera").click()
    expect(page.get_by_label("Parcel barcode")).to_have_value("PKG-1")
    expect(page.get_by_role("button", name="Scan with the camera")).to_be_visible()
    expect(page.locator("#camera-view")).to_be_hidden()  # the camera is off again

    # Someone answered: the handover, and no request at all.
    page.get_by_label("Someone answered").check()
    handover = page.locator("#handover")
    expect(handover).to_be_visible()
    expect(handover).to_contain_text(COURIER_ADVICE[Reason.SOMEONE_ANSWERED])
    expect(page.get_by_role("button", name="Request entry")).to_be_disabled()
    check_page(watched, "09-handover")

    # A parcel that is not for this stop, by keyboard alone: denied, with what to do
    # instead, in big type.
    page.get_by_label("Parcel barcode").fill("")
    page.get_by_label("Parcel barcode").focus()
    page.keyboard.type("PKG-NOT-HERE")
    page.keyboard.press("Tab")
    assert page.evaluate(_FOCUSED) == "camera-start"
    page.keyboard.press("Tab")
    assert page.evaluate(_FOCUSED) == "knock:answered"
    page.keyboard.press("ArrowUp")
    assert page.evaluate(_FOCUSED) == "knock:nobody"
    page.keyboard.press("Tab")
    assert page.evaluate(_FOCUSED) == "request"
    page.keyboard.press("Enter")
    expect(headline(page)).to_have_text("Entry denied", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#detail")).to_have_text(COURIER_ADVICE[Reason.PACKAGE_UNKNOWN])
    expect(page.locator("#outcome")).to_have_attribute("data-tone", "alert")
    size = page.locator("#detail").evaluate("(el) => parseFloat(getComputedStyle(el).fontSize)")
    assert size >= 20, size
    check_page(watched, "10-denied")
    entry = world.couriers[0][1].call("GET", f"/v1/entries/{shown_entry(page)}")
    assert (entry["state"], entry["reason"]) == ("denied", "package_unknown")
    assert unlock_calls(world) == 0

    # Try again: back to the form, empty.
    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_label("Parcel barcode")).to_have_value("")
    expect(page.get_by_label("Parcel barcode")).to_be_focused()
    expect(page.get_by_role("button", name="Request entry")).to_be_disabled()

    # The key revoked (a lost phone, through the API): the next visit makes a new one.
    courier_api = world.couriers[0][1]
    revoked = page.evaluate(_STORED_KEY, courier_id(world))["id"]
    courier_api.call("DELETE", f"/v1/courier/device-keys/{revoked}")
    page.reload()
    expect(page.locator("#device-status")).to_have_text("This phone is registered for entries.")
    renewed = page.evaluate(_STORED_KEY, courier_id(world))
    assert renewed["id"] != revoked and renewed["extractable"] is False
    active = {
        k["id"] for k in courier_api.call("GET", "/v1/courier/device-keys") if not k["revoked_at"]
    }
    assert renewed["id"] in active and revoked not in active


def test_the_resident_approves_then_a_pet_abort_ends_the_entry_aborted(
    live: Any, world: demo.World, phones: Callable[..., Watched]
) -> None:
    home = world.homes[0]
    set_preferences(home, approval_mode="ask", pet_notes="Large dog, usually in the garden.")
    delivery = demo.book(world, home, ["PKG-1"])
    watched = phones("abort", home)
    page = watched.page
    sign_in(watched)
    open_stop(page, "Home 1")
    expect(page.locator('[data-note="approval"]')).to_have_text(
        "The resident approves each entry. Expect a short wait at the door."
    )
    stored = page.evaluate(_STORED_KEY, courier_id(world))
    request_entry(page, "PKG-1")
    expect(headline(page)).to_have_text("Waiting for the resident…", timeout=LIVE_TIMEOUT_MS)
    check_page(watched, "11-waiting-for-resident")
    assert unlock_calls(world) == 0

    # A reload picks the open entry up again, with the same key from IndexedDB.
    page.reload()
    expect(headline(page)).to_have_text("Waiting for the resident…", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#device-status")).to_have_text("This phone is registered for entries.")
    expect(page.locator("#prepare")).to_be_hidden()
    assert page.evaluate(_STORED_KEY, courier_id(world))["id"] == stored["id"]
    assert len(world.couriers[0][1].call("GET", "/v1/courier/device-keys")) == 2  # demo's + this

    # Approved: the hub's challenge reaches the page, which signs it by itself.
    entry_id = shown_entry(page)
    home.resident.call("POST", f"/v1/entries/{entry_id}/approval", json={"decision": "approve"})
    expect(headline(page)).to_have_text("Door unlocked — go in", timeout=LIVE_TIMEOUT_MS)
    assert unlock_calls(world) == 1
    home.door("open_door")
    expect(headline(page)).to_have_text(
        "Close the door behind you — it locks itself", timeout=LIVE_TIMEOUT_MS
    )

    # A dog in the hall: call it off.
    page.get_by_role("button", name="Abort entry").click()
    page.get_by_label("A pet is in the way").check()
    page.get_by_label("Note (optional)").fill("Dog in the hall")
    check_page(watched, "12-abort-reason")
    page.get_by_role("button", name="Abort the entry").click()
    expect(headline(page)).to_have_text("Entry called off — close the door")
    expect(page.get_by_role("button", name="Abort entry")).to_be_hidden()
    check_page(watched, "13-called-off")
    home.door("close_door")
    expect(headline(page)).to_have_text("Entry aborted", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#detail")).to_have_text(COURIER_ADVICE[Reason.COURIER_ABORTED])
    check_page(watched, "14-aborted")
    ended = world.couriers[0][1].call("GET", f"/v1/entries/{entry_id}")
    assert (ended["state"], ended["reason"]) == ("aborted", "courier_aborted")
    assert home.door("status")["status"]["secure"] is True
    assert world.carrier.call("GET", f"/v1/deliveries/{delivery['id']}")["status"] == "booked"
    with live.sessions() as session:
        asked = session.scalars(
            select(AuditEvent.data).where(
                AuditEvent.subject == entry_id, AuditEvent.action == "entry:abort_requested"
            )
        ).all()
    assert [(data["why"], data["note"]) for data in asked] == [("pet", "Dog in the hall")]


def test_a_failed_relock_tells_the_courier_to_stay(
    live: Any,
    make_world: Callable[..., demo.World],
    phones: Callable[..., Watched],
) -> None:
    world = make_world(relock=FAST_RELOCK, auto_relock_seconds=None)
    home = world.homes[0]
    demo.book(world, home, ["PKG-1"])
    watched = phones("relock", home)
    page = watched.page
    sign_in(watched)
    open_stop(page, "Home 1")
    request_entry(page, "PKG-1")
    expect(headline(page)).to_have_text("Door unlocked — go in", timeout=LIVE_TIMEOUT_MS)
    home.door("open_door")
    expect(headline(page)).to_have_text(
        "Close the door behind you — it locks itself", timeout=LIVE_TIMEOUT_MS
    )
    home.door("jam")
    home.door("close_door")  # the hub relocks on close; the bolt jams, the retry too
    expect(headline(page)).to_have_text(
        "The door did not lock — stay and call dispatch", timeout=LIVE_TIMEOUT_MS
    )
    expect(page.locator("#outcome")).to_have_attribute("data-tone", "alert")
    expect(page.get_by_role("button", name="Lock the door")).to_be_hidden()
    check_page(watched, "15-relock-failed")

    # Someone turns the thumb-turn: the lock and the sensor agree, the entry ends.
    home.door("unjam")
    home.door("manual_lock")
    expect(headline(page)).to_have_text("Delivered and locked", timeout=LIVE_TIMEOUT_MS)
