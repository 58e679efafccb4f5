"""`POST /v1/homes/{id}/revoke-everything` asks for the password again (and the code, with
two-step sign-in on), as the remote unlock does and as the web page does: a session's
token alone revokes nothing. A wrong password (or, with two-step sign-in on, a missing,
wrong or spent code) is 401, revokes nothing, is audited and counts toward the sign-in
limits."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from doorstep import demo
from doorstep.accounts import totp, twofactor
from doorstep.accounts.models import User
from doorstep.accounts.signins import PAUSE_AFTER
from doorstep.audit.models import AuditEvent


def _keypad_grant(home: demo.Home) -> str:
    body = {"access_point": "front", "label": "Cleaner", "kind": "always", "method": "keypad"}
    created = home.resident.call("POST", f"/v1/homes/{home.id}/grants", 201, json=body)
    return str(created["grant"]["id"])


def _revoked(home: demo.Home, grant_id: str) -> bool:
    return home.resident.call("GET", f"/v1/grants/{grant_id}")["revoked_at"] is not None


def _reauth_records(live: Any) -> list[tuple[str, Any]]:
    with live.sessions() as session:
        rows = session.execute(
            select(AuditEvent.action, AuditEvent.data)
            .where(AuditEvent.action.like("account:reauth%"))
            .order_by(AuditEvent.seq)
        ).all()
    assert {data.get("via") for _, data in rows} <= {"revoke_everything"}
    return [(action, data.get("reason")) for action, data in rows]


def test_revoke_everything_needs_the_password_again(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    grant_id = _keypad_grant(home)
    path = f"/v1/homes/{home.id}/revoke-everything"

    assert home.resident.http.post(path).status_code == 422  # no body: no password
    assert home.resident.http.post(path, json={}).status_code == 422
    wrong = home.resident.http.post(path, json={"password": "not the password"})

    assert wrong.status_code == 401, wrong.text
    assert "nothing was revoked" in wrong.json()["error"]["message"]
    assert not _revoked(home, grant_id)
    assert _reauth_records(live) == [("account:reauth_failed", "wrong_credentials")]

    answer = home.resident.call("POST", path, json={"password": demo.PASSWORD})

    assert answer == {"revoked": 1}
    assert _revoked(home, grant_id)
    assert _reauth_records(live)[-1] == ("account:reauth", None)


def test_wrong_passwords_count_toward_the_sign_in_pause(live: Any, world: demo.World) -> None:
    """After `PAUSE_AFTER` wrong ones, even the right password is refused for a while
    (`accounts.signins.paused`), and nothing is revoked."""
    home = world.homes[0]
    grant_id = _keypad_grant(home)
    path = f"/v1/homes/{home.id}/revoke-everything"
    for _ in range(PAUSE_AFTER):
        assert home.resident.http.post(path, json={"password": "guess"}).status_code == 401

    paused = home.resident.http.post(path, json={"password": demo.PASSWORD})

    assert paused.status_code == 401, paused.text
    assert not _revoked(home, grant_id)
    assert _reauth_records(live)[-1] == ("account:reauth_failed", "paused")


def _two_step_on(live: Any, email: str) -> bytes:
    """Turn on two-step sign-in for the account, as the security page does (a key, then
    its current code); the app's key. The confirming code's step is then spent."""
    now = live.runtime.clock.now()
    with live.sessions() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        secret = twofactor.start_enrollment(session, user=user, now=now, key=live.runtime.totp_key)
        code = totp.totp(secret, now.timestamp())
        codes = twofactor.confirm(session, user=user, code=code, now=now, key=live.runtime.totp_key)
        assert codes is not None
        session.commit()
    return secret


def _next_code(secret: bytes) -> str:
    """The code of the step after the one the enrolment spent: accepted (one step of
    drift), and newer than any accepted so far."""
    return totp.totp(secret, time.time() + totp.PERIOD_SECONDS)


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_with_two_step_sign_in_on_the_code_is_needed_too(live: Any, world: demo.World) -> None:
    home = world.homes[0]
    secret = _two_step_on(live, "resident1@doorstep.test")
    grant_id = _keypad_grant(home)
    path = f"/v1/homes/{home.id}/revoke-everything"
    right = _next_code(secret)

    attempts = [
        {"password": demo.PASSWORD},  # no code
        {"password": demo.PASSWORD, "code": _other(right)},
        {"password": demo.PASSWORD, "code": ""},
        {"password": "not the password", "code": right},
    ]
    for body in attempts:
        refused = home.resident.http.post(path, json=body)
        assert refused.status_code == 401, (body, refused.text)
        assert "nothing was revoked" in refused.json()["error"]["message"]
    assert not _revoked(home, grant_id)
    assert _reauth_records(live) == [
        ("account:reauth_failed", "wrong_code"),
        ("account:reauth_failed", "wrong_code"),
        ("account:reauth_failed", "wrong_code"),
        ("account:reauth_failed", "wrong_credentials"),
    ]

    answer = home.resident.call("POST", path, json={"password": demo.PASSWORD, "code": right})

    assert answer == {"revoked": 1}
    assert _revoked(home, grant_id)
    assert _reauth_records(live)[-1] == ("account:reauth", None)
    again = home.resident.http.post(path, json={"password": demo.PASSWORD, "code": right})
    assert again.status_code == 401, again.text  # a code is good once
    assert _reauth_records(live)[-1] == ("account:reauth_failed", "wrong_code")


def test_wrong_codes_lock_the_code_and_attempts_are_limited(live: Any, world: demo.World) -> None:
    """After `twofactor.MAX_FAILURES` wrong codes even the right one is refused (429,
    recorded `code_locked`); past the sign-in limit per minute nothing is checked at all.
    Nothing is revoked on the way."""
    home = world.homes[0]
    secret = _two_step_on(live, "resident1@doorstep.test")
    grant_id = _keypad_grant(home)
    path = f"/v1/homes/{home.id}/revoke-everything"
    right = _next_code(secret)
    for _ in range(twofactor.MAX_FAILURES):
        wrong = home.resident.http.post(
            path, json={"password": demo.PASSWORD, "code": _other(right)}
        )
        assert wrong.status_code == 401, wrong.text

    right_body = {"password": demo.PASSWORD, "code": right}
    locked = home.resident.http.post(path, json=right_body)

    assert locked.status_code == 429, locked.text
    assert locked.json()["error"]["code"] == "code_locked"
    assert _reauth_records(live)[-1] == ("account:reauth_failed", "code_locked")
    checked = twofactor.MAX_FAILURES + 1
    answer = home.resident.http.post(path, json=right_body)
    while answer.json()["error"]["code"] == "code_locked" and checked < 200:
        checked += 1
        answer = home.resident.http.post(path, json=right_body)
    assert answer.status_code == 429, answer.text
    assert "too many attempts" in answer.json()["error"]["message"]
    assert len(_reauth_records(live)) == checked  # the one past the limit was not checked
    assert not _revoked(home, grant_id)
