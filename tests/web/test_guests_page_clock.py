"""The guests page says what time it is at the home by the service's clock, the one the
grants it makes are checked against: a page that read the machine's clock would tell the
resident a "now" the service does not share (on a frozen clock in tests, or a server
whose clock the service does not use)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from .conftest import Standalone


def test_the_guests_page_tells_the_homes_time_by_the_services_clock(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()  # its frozen clock: Mon 7 Jan 2030, 09:00 UTC
    client = app.web()
    client.sign_up("clock@doorstep.test")
    client.sign_in("clock@doorstep.test")
    home_id = client.add_home("Clockwork")  # Europe/London
    path = f"/homes/{home_id}/guests"

    assert "(Europe/London), now 2030-01-07 09:00." in client.get(path).text

    app.clock.set(datetime(2030, 1, 7, 9, 40, tzinfo=UTC))
    assert "(Europe/London), now 2030-01-07 09:40." in client.get(path).text
