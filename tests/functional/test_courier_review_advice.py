"""Every reason a courier's entry can end with comes with advice (what to do instead),
over the API as in the app: the service's own endings and every hub refusal, such as a
bolt that jams on the unlock."""

from __future__ import annotations

from typing import Any

import pytest

from doorstep import demo
from doorstep.protocol.codes import COURIER_ADVICE, Reason, advice_for

# The hub's refusals of a shadow document end no entry; every other reason can.
_NO_ENTRY = {reason for reason in Reason if reason.startswith("shadow_")}


@pytest.mark.parametrize("reason", sorted(set(Reason) - _NO_ENTRY))
def test_every_reason_an_entry_can_end_with_has_advice(reason: Reason) -> None:
    assert advice_for(reason), reason


def test_a_refused_unlock_answers_with_its_advice(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    courier = world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-1"])
    home.door("jam")  # the bolt jams when it next moves: the unlock fails
    entry = demo.request_entry(courier, delivery["id"], "PKG-1", home.latitude, home.longitude)
    assert (entry["state"], entry["reason"]) == ("refused", "actuator_failed")
    assert entry["advice"] == COURIER_ADVICE[Reason.ACTUATOR_FAILED]
    read = courier.call("GET", f"/v1/entries/{entry['id']}")
    assert read["advice"] == COURIER_ADVICE[Reason.ACTUATOR_FAILED]
