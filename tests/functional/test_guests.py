"""Guests end to end on real components (HTTP, Mosquitto, an in-process hub with the
simulated lock, SMTP): the resident invites by email, the guest accepts, registers a
phone key and enters through the entry engine with proof of possession; the resident
is told of each visit; revocation denies at once (a pending entry's proof too) and the
hub refuses the unused token."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from sqlalchemy import select

from doorstep import demo
from doorstep.access.models import Entry
from doorstep.audit.models import AuditEvent
from doorstep.grants.models import HubShadow
from doorstep.notify.models import OutboxMessage
from doorstep.protocol import PROTOCOL_VERSION
from doorstep.protocol.messages import Command, CommandKind
from doorstep.settings import NotifySettings
from polling import poll

if TYPE_CHECKING:
    from conftest import AuditWait, Mailbox

PASSWORD = "guest-password-1"


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(
        smtp_host="127.0.0.1",
        smtp_port=mailbox[1],
        poll_seconds=0.1,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
    )


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Clients opened by a test, closed after it."""
    with ExitStack() as opened:
        yield opened


def mail_text(box: Mailbox, subject: str) -> str:
    box.wait_subjects([subject])
    for _to, message in box.messages:
        if message["subject"] == subject:
            return str(message.get_payload(decode=True).decode())
    raise AssertionError(f"no mail {subject!r}")


def invite_guest(world: demo.World, box: Mailbox, **fields: Any) -> tuple[dict[str, Any], str]:
    """The resident grants Ana access by the app; Ana accepts the mailed invitation.
    Returns the grant and the invitation link's token."""
    home = world.homes[0]
    body = {
        "access_point": "front",
        "label": "Ana",
        "kind": "always",
        "email": "ana@example.org",
        **fields,
    }
    created = home.resident.call("POST", f"/v1/homes/{home.id}/grants", 201, json=body)
    assert created["pin"] is None and created["grant"]["grantee_id"]
    text = mail_text(box, "You are invited to Home 1")
    match = re.search(r"/guest/accept#([A-Za-z0-9_-]+)", text)
    assert match, text
    return created["grant"], match.group(1)


def stranger(url: str) -> demo.Api:
    """Another resident, with a home of their own."""
    email, password = "stranger@example.org", "stranger-password"
    with demo.Api(url) as anonymous:
        anonymous.call(
            "POST", "/v1/residents", 201, json={"email": email, "name": "S", "password": password}
        )
    other = demo.Api.login(url, grant_type="password", username=email, password=password)
    other.call(
        "POST",
        "/v1/homes",
        201,
        json={
            "name": "Elsewhere",
            "address": "2 Road",
            "latitude": 48.0,
            "longitude": 2.0,
            "timezone": "Europe/Paris",
        },
    )
    return other


def guest_phone(world: demo.World, token: str) -> demo.Api:
    url = world.service.url
    with demo.Api(url) as anonymous:
        account = anonymous.call(
            "POST", "/v1/invitations/accept", json={"token": token, "password": PASSWORD}
        )
    assert account["role"] == "guest"
    guest = demo.Api.login(
        url, grant_type="password", username="ana@example.org", password=PASSWORD
    )
    guest.phone = demo.Phone()
    guest.phone.register(guest)
    return guest


def visit(guest: demo.Api, grant_id: str, phone: demo.Phone | None = None) -> dict[str, Any]:
    """Ask to enter on the grant; sign the door's challenge with `phone` (the guest's own
    by default) and send the proof."""
    assert guest.phone is not None
    body = {"grant_id": grant_id, "device_key_id": guest.phone.key_id}
    entry: dict[str, Any] = guest.call("POST", "/v1/visits?wait=challenge", 201, json=body)
    if entry["state"] != "authorized" or not entry.get("to_sign"):
        return entry
    proof = (phone or guest.phone).prove(entry["to_sign"])
    unlocked: dict[str, Any] = guest.call(
        "POST", f"/v1/visits/{entry['id']}/unlock?wait=unlocked", json={"proof": proof}
    )
    return unlocked


def unlock_calls(world: demo.World) -> int:
    hub = world.homes[0].hub_process
    assert hub is not None
    return int(hub.lock.unlock_calls)  # type: ignore[attr-defined]


def test_invited_guest_enters_with_the_app_and_the_resident_is_told(
    live: Any,
    world: demo.World,
    mailbox: tuple[Mailbox, int],
    wait_audit: AuditWait,
    stack: ExitStack,
) -> None:
    box, _port = mailbox
    home = world.homes[0]
    grant, token = invite_guest(world, box)
    guest = stack.enter_context(guest_phone(world, token))
    assert [g["id"] for g in guest.call("GET", "/v1/me/grants")] == [grant["id"]]

    entry = visit(guest, grant["id"])
    assert entry["state"] == "unlocked", entry
    home.door("open_door")
    home.door("close_door")
    assert demo.wait_entry(guest, entry["id"], "done")["state"] == "done"

    wait_audit(
        home.resident,
        home.id,
        "entry:authorized",
        entry["id"],
        purpose="guest",
        grant_id=grant["id"],
    )
    assert "with the Doorstep app" in mail_text(box, "Ana is coming in")
    assert "locked" in mail_text(box, "Ana has left, and your door is locked")
    # The invitation works once.
    with demo.Api(str(guest.http.base_url)) as anonymous:
        again = anonymous.http.post(
            "/v1/invitations/accept", json={"token": token, "password": PASSWORD}
        )
    assert again.status_code == 401


def test_a_proof_made_with_another_key_or_a_stale_challenge_is_refused(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], stack: ExitStack
) -> None:
    grant, token = invite_guest(world, mailbox[0])
    guest = stack.enter_context(guest_phone(world, token))
    stolen = visit(guest, grant["id"], phone=demo.Phone())  # a key the grant does not name
    assert (stolen["state"], stolen["reason"]) == ("refused", "proof_invalid")
    assert unlock_calls(world) == 0
    # The challenge was spent by that attempt: the right key over it is now stale.
    body = {"grant_id": grant["id"], "device_key_id": guest.phone.key_id}  # type: ignore[union-attr]
    entry = guest.call("POST", "/v1/visits?wait=challenge", 201, json=body)
    to_sign = entry["to_sign"]
    first = guest.call(
        "POST",
        f"/v1/visits/{entry['id']}/unlock?wait=unlocked",
        json={"proof": demo.Phone().prove(to_sign)},
    )
    assert first["state"] == "refused"
    replay = guest.http.post(
        f"/v1/visits/{entry['id']}/unlock?wait=unlocked", json={"proof": guest.phone.prove(to_sign)}
    )  # type: ignore[union-attr]
    assert replay.status_code == 409  # the entry is over; nothing more reaches the door
    assert unlock_calls(world) == 0


def test_a_visit_whose_hub_does_not_answer_in_time_is_accepted_then_followed(
    live: Any,
    world: demo.World,
    mailbox: tuple[Mailbox, int],
    stack: ExitStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """202 (not 201 or 200) when the hub did not answer within the wait: the entry is
    made and its command sent, still `authorized`; the guest's app follows it."""
    grant, token = invite_guest(world, mailbox[0])
    guest = stack.enter_context(guest_phone(world, token))
    assert guest.phone is not None
    link = live.runtime.link
    held: list[tuple[str, Any]] = []

    def silent_hub() -> None:
        monkeypatch.setattr(
            link, "publish_command", lambda hub, command: held.append((hub, command))
        )
        monkeypatch.setattr(live.runtime.settings.entry, "hub_reply_timeout_seconds", 0.5)

    def late_answer() -> None:
        monkeypatch.undo()
        [(hub_id, command)] = held
        held.clear()
        link.publish_command(hub_id, command)

    silent_hub()
    body = {"grant_id": grant["id"], "device_key_id": guest.phone.key_id}
    asked = guest.http.post("/v1/visits?wait=challenge", json=body)
    assert asked.status_code == 202, asked.text
    assert (asked.json()["state"], asked.json()["to_sign"]) == ("authorized", None)
    late_answer()
    challenged = demo.wait_challenge(guest, asked.json()["id"])
    assert challenged["to_sign"]

    silent_hub()
    proof = guest.phone.prove(challenged["to_sign"])
    proved = guest.http.post(
        f"/v1/visits/{challenged['id']}/unlock?wait=unlocked", json={"proof": proof}
    )
    assert proved.status_code == 202, proved.text
    assert proved.json()["state"] == "authorized"
    late_answer()
    assert demo.wait_entry(guest, challenged["id"], "unlocked")["state"] == "unlocked"
    assert unlock_calls(world) == 1


def test_revocation_denies_at_once_and_is_enforced_at_the_hub(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], stack: ExitStack
) -> None:
    home = world.homes[0]
    grant, token = invite_guest(world, mailbox[0])
    guest = stack.enter_context(guest_phone(world, token))
    # An entry authorized but not yet proven: its token is out there, unused.
    body = {"grant_id": grant["id"], "device_key_id": guest.phone.key_id}  # type: ignore[union-attr]
    pending = guest.call("POST", "/v1/visits?wait=challenge", 201, json=body)
    assert pending["to_sign"]

    revoked = home.resident.call("DELETE", f"/v1/grants/{grant['id']}")
    assert revoked["revoked_at"] and revoked["shadow_version"] >= 1
    denied = guest.call("POST", "/v1/visits", 201, json=body)
    assert (denied["state"], denied["reason"]) == ("denied", "grant_revoked")

    enforced = poll(
        lambda: home.resident.call("GET", f"/v1/grants/{grant['id']}"),
        lambda g: g["enforced_at_hub"],
        timeout=10,
    )
    assert enforced["enforced_at_hub"] is True
    with live.sessions() as session:
        issued = session.get(Entry, pending["id"]).grant_token  # the unused token
    assert issued
    # The service checks the grant again when the proof comes, and sends nothing...
    proof = guest.phone.prove(pending["to_sign"])  # type: ignore[union-attr]
    late = guest.call(
        "POST", f"/v1/visits/{pending['id']}/unlock?wait=unlocked", json={"proof": proof}
    )
    assert (late["state"], late["reason"]) == ("denied", "grant_revoked")
    # ...and the token issued before the revocation, with the phone's proof over the
    # hub's live challenge, is refused by the hub itself.
    unlock = Command(
        v=PROTOCOL_VERSION, command_id=secrets.token_hex(12), kind=CommandKind.UNLOCK,
        not_after=int(time.time()) + 30, entry_id=pending["id"], access_point="front",
        grant=issued, proof=proof,
    )  # fmt: skip
    hub = home.hub_process  # in-process (`conftest.InProcessHub`): its agent is at hand
    assert hub is not None
    refused = hub.agent.handle_command(unlock.model_dump_json().encode())  # type: ignore[attr-defined]
    assert refused is not None
    assert (refused.result, refused.reason) == ("refused", "token_revoked")
    assert unlock_calls(world) == 0
    with live.sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.subject == grant["id"])
        ).all()
    assert actions == ["grant:created", "grant:revoked"]


def test_revoke_everything_and_other_residents_cannot_touch_grants(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int], stack: ExitStack
) -> None:
    home = world.homes[0]
    grant, _token = invite_guest(world, mailbox[0])
    second = home.resident.call(
        "POST",
        f"/v1/homes/{home.id}/grants",
        201,
        json={
            "access_point": "front",
            "label": "Bo",
            "kind": "weekly",
            "email": "bo@example.org",
            "windows": [{"days": ["mon"], "start": "09:00", "end": "10:00"}],
        },
    )
    other = stack.enter_context(stranger(world.service.url))
    for method, path, body in [
        ("GET", f"/v1/grants/{grant['id']}", None),
        ("DELETE", f"/v1/grants/{grant['id']}", None),
        ("GET", f"/v1/homes/{home.id}/grants", None),
        # With the stranger's own password, right: still not their home.
        ("POST", f"/v1/homes/{home.id}/revoke-everything", {"password": "stranger-password"}),
    ]:
        assert other.http.request(method, path, json=body).status_code == 404, path
    answer = home.resident.call(
        "POST", f"/v1/homes/{home.id}/revoke-everything", json={"password": demo.PASSWORD}
    )
    assert answer == {"revoked": 2}
    listed = home.resident.call("GET", f"/v1/homes/{home.id}/grants")
    assert {g["id"] for g in listed} == {grant["id"], second["grant"]["id"]}
    assert all(g["revoked_at"] for g in listed)


BAD_GRANTS = [
    (
        {"kind": "range", "starts_at": "2027-03-28T01:30:00", "ends_at": "2027-03-28T05:00:00"},
        "does not exist",
    ),  # London's spring-forward gap
    (
        {
            "kind": "range",
            "starts_at": "2020-01-01T09:00:00",
            "ends_at": "2020-01-02T09:00:00",
            "email": "x@example.org",
        },
        "already ended",
    ),
    ({"kind": "always", "method": "app"}, "needs the guest's email"),
    ({"kind": "always", "email": "x@example.org", "access_point": "garage"}, "no access point"),
    (
        {
            "kind": "weekly",
            "email": "x@example.org",
            "windows": [{"days": ["mon"], "start": "25:00", "end": "26:00"}],
        },
        "windows",
    ),
    ({"kind": "weekly", "email": "x@example.org", "windows": []}, "1 to 7 windows"),
    ({"kind": "always", "method": "keypad", "pin": "12"}, "pin"),
    (  # a lock's year-day schedules count from 2000: the code could never be programmed
        {
            "kind": "range",
            "method": "keypad",
            "starts_at": "1999-12-31T12:00:00+00:00",
            "ends_at": "2030-01-01T00:00:00+00:00",
        },
        "a lock cannot hold a keypad code with this schedule",
    ),
    ({"kind": "always", "email": "resident1@doorstep.test"}, "another kind of account"),
    ({"kind": "sometimes", "email": "x@example.org"}, "kind"),
]


def test_bad_grants_are_refused_clearly_and_change_nothing(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int]
) -> None:
    home = world.homes[0]
    for body, problem in BAD_GRANTS:
        full = {"access_point": "front", "label": "X", **body}
        response = home.resident.http.post(f"/v1/homes/{home.id}/grants", json=full)
        assert response.status_code in (404, 409, 422), response.text
        assert problem in response.text, (body, response.text)
    assert home.resident.call("GET", f"/v1/homes/{home.id}/grants") == []
    assert not any(to == ["x@example.org"] for to, _message in mailbox[0].messages)


def test_a_keypad_code_is_programmed_used_and_cleared_when_revoked(
    live: Any, world: demo.World, mailbox: tuple[Mailbox, int]
) -> None:
    """A code for someone without the app: shown once, sealed to the hub, programmed on
    the lock; typing it opens the door as a recorded, relock-verified entry; revoked, the
    hub clears it and the lock refuses it."""
    box, _port = mailbox
    home = world.homes[0]
    body = {"access_point": "front", "label": "Cleaner", "kind": "always", "method": "keypad"}
    created = home.resident.call("POST", f"/v1/homes/{home.id}/grants", 201, json=body)
    pin, grant = created["pin"], created["grant"]
    assert pin and pin.isdigit() and len(pin) == 6
    listed = home.resident.call("GET", f"/v1/homes/{home.id}/grants")
    assert f'"{pin}"' not in orjson.dumps(listed).decode()  # shown once, never again
    applied = poll(
        lambda: home.resident.call("GET", f"/v1/grants/{grant['id']}"),
        lambda g: g["enforced_at_hub"],
        timeout=10,
    )
    assert applied["enforced_at_hub"] is True

    wrong = "0000000" if pin != "0000000" else "1111111"
    assert home.type_code(wrong)["granted"] is False
    assert home.type_code(pin)["granted"] is True
    entry_id = poll(lambda: _keypad_entry(live, grant["id"]), bool, timeout=10)
    assert entry_id
    home.door("open_door")
    home.door("close_door")
    assert demo.wait_entry(home.resident, entry_id, "done")["state"] == "done"
    assert "with their keypad code" in mail_text(box, "Cleaner is coming in")
    mail_text(box, "Cleaner has left, and your door is locked")

    home.resident.call("DELETE", f"/v1/grants/{grant['id']}")
    cleared = poll(
        lambda: home.resident.call("GET", f"/v1/grants/{grant['id']}"),
        lambda g: g["enforced_at_hub"],
        timeout=10,
    )
    assert cleared["enforced_at_hub"] is True
    refused = home.type_code(pin)
    assert (refused["granted"], refused["error"]) == (False, "invalid_credential")
    # The code never reached the audit log or the outbox in the clear.
    with live.sessions() as session:
        records = session.scalars(select(AuditEvent.data)).all()
        mails = session.scalars(select(OutboxMessage.payload)).all()
    # (As a value of its own: six digits may well occur inside a timestamp or a hash.)
    assert f'"{pin}"' not in orjson.dumps([records, mails]).decode()


def _keypad_entry(live: Any, grant_id: str) -> str | None:
    with live.sessions() as session:
        entry = session.scalar(select(Entry).where(Entry.grant_id == grant_id))
        return entry.id if entry is not None and entry.method == "keypad" else None


def test_a_revoked_code_stuck_on_an_unreachable_lock_is_not_reported_cleared(
    live: Any, world: demo.World
) -> None:
    """The lock is offline when the code is revoked: the hub applies the new document
    but cannot take the code off, so the code still opens the door once the lock is
    back, until the hub's retry clears it. Until then the resident must not be told it
    is cleared."""
    home = world.homes[0]
    body = {"access_point": "front", "label": "Cleaner", "kind": "always", "method": "keypad"}
    created = home.resident.call("POST", f"/v1/homes/{home.id}/grants", 201, json=body)
    pin, grant_id = created["pin"], created["grant"]["id"]
    poll(lambda: home.resident.call("GET", f"/v1/grants/{grant_id}"),
         lambda g: g["enforced_at_hub"], timeout=10)  # fmt: skip

    home.door("offline")
    revoked = home.resident.call("DELETE", f"/v1/grants/{grant_id}")
    needed = revoked["shadow_version"]

    def reported() -> int:
        with live.sessions() as session:
            row = session.scalar(select(HubShadow).where(HubShadow.hub_id == home.hub_id))
            return row.reported_version if row is not None else 0

    poll(reported, lambda version: version >= needed, timeout=10)
    stuck = home.resident.call("GET", f"/v1/grants/{grant_id}")
    assert stuck["enforced_at_hub"] is False  # the hub took the version, not the code off

    home.door("online")
    cleared = poll(lambda: home.resident.call("GET", f"/v1/grants/{grant_id}"),
                   lambda g: g["enforced_at_hub"], timeout=20)  # fmt: skip
    assert cleared["enforced_at_hub"] is True  # the retry (every 10 s) took it off
    refused = home.type_code(pin)
    assert (refused["granted"], refused["error"]) == (False, "invalid_credential")
