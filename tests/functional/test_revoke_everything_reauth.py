"""`POST /v1/homes/{id}/revoke-everything` asks for the password again (and the code, with
two-step sign-in on), as the remote unlock does and as the web page does: a session's
token alone revokes nothing. A wrong password is 401, revokes nothing, is audited and
counts toward the sign-in limits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from doorstep import demo
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
