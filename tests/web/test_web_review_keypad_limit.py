"""A keypad code asked for on the guests page when the door's hub already holds all the
codes it can (`grants.service.MAX_CODES_PER_HUB`): in Debian's Chromium the resident
reads why, in an alert above the form, with what they typed kept, no code is shown and
nothing is created."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import ViewportSize, expect
from sqlalchemy import func, select

from doorstep import demo
from doorstep.grants.models import AccessGrant
from doorstep.grants.service import MAX_CODES_PER_DOOR, MAX_CODES_PER_HUB
from doorstep.homes.models import AccessPoint

from .conftest import PHONE, Watched
from .test_journeys import check_page, sign_in_by_form

RESIDENT = "resident1@doorstep.test"
SEALED = "c2VhbGVkLXBpbg"  # stands for a sealed code; no hub can open it


def _fill_the_hub(live: Any, home: demo.Home) -> None:
    """`MAX_CODES_PER_HUB` keypad codes in force on new doors of the home's hub (none on
    its front door, so the door's own limit is not what refuses the next one)."""
    doors = -(-MAX_CODES_PER_HUB // MAX_CODES_PER_DOOR)
    for number in range(doors):
        home.resident.call("POST", f"/v1/homes/{home.id}/access-points", 201,
                           json={"slug": f"d{number}", "name": f"Door {number}"})  # fmt: skip
    now = datetime.now(UTC)
    with live.sessions() as session:
        points = {
            point.slug: point
            for point in session.scalars(select(AccessPoint).where(AccessPoint.home_id == home.id))
        }
        for number in range(MAX_CODES_PER_HUB):
            door = points[f"d{number // MAX_CODES_PER_DOOR}"]
            session.add(
                AccessGrant(
                    id=f"agr-seed{number:04d}", home_id=home.id, access_point_id=door.id,
                    purpose="guest", method="keypad", label=f"Seed {number}", kind="always",
                    timezone="UTC", windows="[]", require_geofence=False, notes="",
                    created_by="usr-seed", created_at=now - timedelta(days=1), pin_sealed=SEALED,
                )
            )  # fmt: skip
        session.commit()


def _grants(live: Any, home: demo.Home) -> int:
    with live.sessions() as session:
        count = session.scalar(
            select(func.count()).select_from(AccessGrant).where(AccessGrant.home_id == home.id)
        )
    return int(count or 0)


def test_a_code_the_hub_has_no_room_for_is_refused_on_the_page(
    live: Any, world: demo.World, pages: Callable[[str, ViewportSize], Watched]
) -> None:
    home = world.homes[0]
    _fill_the_hub(live, home)
    watched = pages("guests-hub-full", PHONE)
    page = watched.page
    sign_in_by_form(page, RESIDENT)
    page.goto(f"/homes/{home.id}/guests")

    page.get_by_label("Name").fill("Window cleaner")
    page.get_by_label("With a keypad code").check()
    page.get_by_label("Door", exact=True).select_option("front")
    page.get_by_label("Any time").check()
    watched.expect_status(409)
    page.get_by_role("button", name="Give access").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(f"already holds {MAX_CODES_PER_HUB} keypad codes")
    expect(alert).to_be_in_viewport()  # not 250 listed codes further down
    expect(alert).to_contain_text("revoke one first")
    expect(page.locator("#new-code")).to_have_count(0)
    expect(page.locator("#created")).to_have_count(0)
    expect(page.get_by_label("Name")).to_have_value("Window cleaner")
    expect(page.get_by_label("With a keypad code")).to_be_checked()
    check_page(watched, "01-hub-full")
    assert _grants(live, home) == MAX_CODES_PER_HUB
    listed = home.resident.call("GET", f"/v1/homes/{home.id}/grants")
    assert "Window cleaner" not in {grant["label"] for grant in listed}
