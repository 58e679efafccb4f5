"""A provider's worker who has been let go (deactivated by the provider's admin) sees no
more of the homes their appointments were at: the guest app's list and each appointment's
page, which show the home's name, address, door, the hours it is visited and the
resident's notes, answer as for an access that is not theirs. The entry engine already
refuses them (`visitor_inactive`); the pages must not go on telling them where and when."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from doorstep import demo
from doorstep.settings import NotifySettings
from functional.conftest import Mailbox

from .support import WebClient, session_token
from .visitors import accept, book, mailed_link, sign_up_provider, smtp_server

GUEST_COOKIE = "doorstep_guest"
NOTES = "Key safe code 4411, alarm off by 9"


@pytest.fixture(name="mailbox")
def _mailbox() -> Iterator[tuple[Mailbox, int]]:
    yield from smtp_server()


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


def test_a_deactivated_worker_no_longer_sees_the_home(
    live: Any,
    world: demo.World,
    mailbox: tuple[Mailbox, int],
    web_clients: Callable[[], WebClient],
) -> None:
    box, _port = mailbox
    home = world.homes[0]
    provider, admin = sign_up_provider(live.url, "Sparkle", "boss@sparkle.test")
    worker = admin.call("POST", f"/v1/providers/{provider['id']}/workers", 201,
                        json={"email": "wes@sparkle.test", "name": "Wes Worker"})  # fmt: skip
    accept(live.url, mailed_link(box, "Join Sparkle on Doorstep", "wes@sparkle.test"),
           "wes@sparkle.test").close()  # fmt: skip
    appointment = book(home, provider["id"], notes=NOTES)
    admin.call("POST", f"/v1/appointments/{appointment['id']}/assign",
               json={"worker_id": worker["user_id"]})  # fmt: skip
    wes = web_clients()
    wes.http.cookies.set(GUEST_COOKIE, session_token(live, "wes@sparkle.test"),
                         domain=wes.http.base_url.host, path="/")  # fmt: skip
    address = home.resident.call("GET", f"/v1/homes/{home.id}")["address"]
    pass_path = f"/guest/grants/{appointment['id']}"
    assert NOTES in wes.get("/guest").text  # assigned: theirs to see
    assert address in wes.get(pass_path).text

    admin.call("POST", f"/v1/providers/{provider['id']}/workers/{worker['user_id']}/deactivate")
    admin.close()

    listed = wes.get("/guest")
    assert listed.status_code == 200  # still signed in, with nothing to show
    assert "No access right now." in listed.text
    assert NOTES not in listed.text and address not in listed.text
    page = wes.get(pass_path)
    assert page.status_code == 404
    assert NOTES not in page.text and address not in page.text
