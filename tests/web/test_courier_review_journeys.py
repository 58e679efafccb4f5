"""The courier's app in Debian's Chromium where the door or the network lets the courier
down: a bolt that jams on the unlock is refused with advice that says what to do
instead; a request whose answer the network dropped, and a reload while the network is
down, pick the entry up (one entry, one unlock, never a second request); an entry ended
while the phone was signing the door's challenge shows how it ended instead of a
stalled "Confirming". And the route the page picks an entry up by answers the stop's
open entry, and "not found" once it has ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Route, expect
from sqlalchemy import func, select

from doorstep import demo
from doorstep.access.models import Entry
from doorstep.protocol.codes import COURIER_ADVICE, Reason

from . import test_courier_journeys as journeys
from .conftest import Watched
from .support import WebClient, session_token
from .test_courier_isolation import courier_client
from .test_courier_journeys import (
    LIVE_TIMEOUT_MS,
    headline,
    open_stop,
    request_entry,
    shown_entry,
    sign_in,
    unlock_calls,
)

phones = journeys.phones  # the journeys' phone-sized pages, located at the home


def _entries(live: Any, delivery_id: str) -> int:
    with live.sessions() as session:
        count = session.scalar(
            select(func.count()).select_from(Entry).where(Entry.delivery_id == delivery_id)
        )
    return int(count or 0)


def test_a_bolt_that_jams_on_unlock_tells_the_courier_what_to_do_instead(
    live: Any, world: demo.World, phones: Callable[..., Watched]
) -> None:
    home = world.homes[0]
    demo.book(world, home, ["PKG-1"])
    home.door("jam")  # the bolt jams when it next moves: the unlock fails
    watched = phones("review-jammed", home)
    page = watched.page
    sign_in(watched)
    open_stop(page, "Home 1")
    request_entry(page, "PKG-1")

    expect(headline(page)).to_have_text("The door did not open", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#detail")).to_have_text(COURIER_ADVICE[Reason.ACTUATOR_FAILED])
    entry = world.couriers[0][1].call("GET", f"/v1/entries/{shown_entry(page)}")
    assert (entry["state"], entry["reason"]) == ("refused", "actuator_failed")
    assert entry["advice"] == COURIER_ADVICE[Reason.ACTUATOR_FAILED]


def test_a_request_whose_answer_the_network_dropped_is_picked_up_not_made_twice(
    live: Any, world: demo.World, phones: Callable[..., Watched]
) -> None:
    home = world.homes[0]
    delivery = demo.book(world, home, ["PKG-1"])
    watched = phones("review-dropped", home)
    page = watched.page
    sign_in(watched)
    open_stop(page, "Home 1")

    def answer_lost(route: Route) -> None:
        route.fetch()  # the service decides, the door answers; the answer never arrives
        route.abort("internetdisconnected")

    page.route("**/courier/api/entries", answer_lost, times=1)
    request_entry(page, "PKG-1")

    expect(headline(page)).to_have_text("Door unlocked — go in", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#prepare")).to_be_hidden()
    assert _entries(live, delivery["id"]) == 1
    assert unlock_calls(world) == 1
    watched.errors[:] = [e for e in watched.errors if "ERR_INTERNET_DISCONNECTED" not in e]


def test_a_reload_while_the_network_is_down_waits_for_the_entry_instead_of_a_new_request(
    live: Any, world: demo.World, phones: Callable[..., Watched]
) -> None:
    home = world.homes[0]
    home.resident.call(
        "PUT",
        f"/v1/homes/{home.id}/preferences",
        json={**home.resident.call("GET", f"/v1/homes/{home.id}/preferences"),
              "approval_mode": "ask"},
    )  # fmt: skip
    delivery = demo.book(world, home, ["PKG-1"])
    watched = phones("review-reload-offline", home)
    page = watched.page
    sign_in(watched)
    open_stop(page, "Home 1")
    request_entry(page, "PKG-1")
    expect(headline(page)).to_have_text("Waiting for the resident…", timeout=LIVE_TIMEOUT_MS)
    entry_id = shown_entry(page)

    # The reload's first read of the entry is lost; the page says so and asks again.
    page.route(f"**/courier/api/entries/{entry_id}", lambda route: route.abort(), times=1)
    page.reload()
    expect(headline(page)).to_have_text("Waiting for the resident…", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#prepare")).to_be_hidden()
    expect(page.locator("#connection")).to_be_hidden()
    assert _entries(live, delivery["id"]) == 1
    watched.errors[:] = [e for e in watched.errors if "ERR_FAILED" not in e]


def test_an_entry_ended_while_the_phone_signs_shows_how_it_ended(
    live: Any, world: demo.World, phones: Callable[..., Watched]
) -> None:
    home = world.homes[0]
    demo.book(world, home, ["PKG-1"])
    courier_api = world.couriers[0][1]
    watched = phones("review-ended-signing", home)
    page = watched.page
    sign_in(watched)
    open_stop(page, "Home 1")

    def called_off_elsewhere(route: Route) -> None:
        # The courier calls the entry off on another device just as this one proves.
        entry_id = route.request.url.split("/entries/")[1].split("/")[0]
        courier_api.call("POST", f"/v1/courier/entries/{entry_id}/abort", json={"reason": "pet"})
        route.continue_()

    page.route("**/courier/api/entries/*/unlock", called_off_elsewhere, times=1)
    request_entry(page, "PKG-1")

    expect(headline(page)).to_have_text("Entry aborted", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#detail")).to_have_text(COURIER_ADVICE[Reason.COURIER_ABORTED])
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
    assert unlock_calls(world) == 0
    watched.errors[:] = [e for e in watched.errors if "status of 409" not in e]


def test_the_stops_open_entry_is_found_until_it_ends(
    live: Any, world: demo.World, web_clients: Callable[[], WebClient]
) -> None:
    home = world.homes[0]
    courier_api = world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    client = courier_client(web_clients, session_token(live, "casey@parcelly.test"))
    path = f"/courier/api/stops/{delivery['id']}/entry"
    assert client.get(path).status_code == 404  # nothing asked yet

    entry = demo.request_entry(courier_api, delivery["id"], "PKG-1", home.latitude, home.longitude)
    found = client.get(path)
    assert found.status_code == 200
    assert (found.json()["id"], found.json()["state"]) == (entry["id"], "unlocked")
    assert found.headers["cache-control"] == "no-store"

    courier_api.call("POST", f"/v1/courier/entries/{entry['id']}/abort", json={"reason": "pet"})
    demo.wait_entry(courier_api, entry["id"], "aborted")
    assert client.get(path).status_code == 404
