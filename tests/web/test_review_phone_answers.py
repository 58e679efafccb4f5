"""The courier app's JSON when the hub answers late: what `static/courier.js` relies on.

The bearer API says 202 when the hub did not answer within the wait; the courier app's
routes answer 202 too, with the entry still `authorized` and a `version`, and the script
follows it: a long-poll with `seen` brings the door's challenge once the hub answers, then
the unlock. Nothing is signed twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from doorstep import demo
from polling import poll

from .support import WebClient, session_token
from .test_courier_isolation import app_csrf, courier_client

COURIER = "casey@parcelly.test"  # the world's courier


def test_the_courier_app_follows_an_entry_whose_hub_answers_late(
    live: Any,
    world: demo.World,
    web_clients: Callable[[], WebClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, link = world.homes[0], live.runtime.link
    phone = world.couriers[0][1].phone
    assert phone is not None and phone.key_id is not None
    delivery = demo.book(world, home, ["PKG-LATE"])
    app = courier_client(web_clients, session_token(live, COURIER))
    csrf = {"x-csrf-token": app_csrf(app)}
    held: list[tuple[str, Any]] = []

    def silent_hub() -> None:
        monkeypatch.setattr(link, "publish_command", lambda hub, cmd: held.append((hub, cmd)))
        monkeypatch.setattr(live.runtime.settings.entry, "hub_reply_timeout_seconds", 0.5)

    def late_answer() -> None:
        monkeypatch.undo()
        [(hub_id, command)] = held
        held.clear()
        link.publish_command(hub_id, command)

    def follow(entry: dict[str, Any], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        path = f"/courier/api/entries/{entry['id']}"

        def read() -> dict[str, Any]:
            answer = app.get(path, params={"seen": entry["version"], "wait": 5})
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body

        return poll(read, done, timeout=15)

    silent_hub()
    asked = app.http.post("/courier/api/entries", headers=csrf, json={
        "delivery_id": delivery["id"], "barcode": "PKG-LATE", "latitude": home.latitude,
        "longitude": home.longitude, "accuracy_m": 5, "nobody_answered": True,
        "device_key_id": phone.key_id,
    })  # fmt: skip
    assert asked.status_code == 202, asked.text
    entry = asked.json()
    assert (entry["state"], entry["to_sign"], entry["ended"]) == ("authorized", None, False)
    assert entry["headline"] == "The door has not answered yet"

    late_answer()
    challenged = follow(entry, lambda e: bool(e["to_sign"]))
    assert challenged["state"] == "authorized" and challenged["to_sign"], challenged

    silent_hub()
    proved = app.http.post(
        f"/courier/api/entries/{entry['id']}/unlock",
        headers=csrf,
        json={"proof": phone.prove(challenged["to_sign"])},
    )
    assert proved.status_code == 202, proved.text
    sent = proved.json()
    # Still authorized, and nothing left to sign: the script follows, it does not sign again.
    assert (sent["state"], sent["to_sign"], sent["ended"]) == ("authorized", None, False)

    late_answer()
    unlocked = follow(sent, lambda e: e["state"] != "authorized")
    assert unlocked["state"] == "unlocked", unlocked
    assert unlocked["headline"] == "Door unlocked — go in"
