"""Sign-ins and re-authentications are on the audit log (`accounts.signins`), succeeded and
failed, by every way in: the web form and its code step, the API token, the web
re-authentication and the password sent with the API's remote unlock. No record holds a
password, a code, or an email that is no account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select, text

from doorstep.accounts import signins, totp, twofactor
from doorstep.accounts.models import Role, User
from doorstep.accounts.service import create_user
from doorstep.audit.models import AuditEvent

from .support import PASSWORD, WebClient, new_email

WRONG = "not the password 7"
ACTIONS = ("account:signin", "account:signin_failed", "account:reauth", "account:reauth_failed")


def _records(live: Any) -> list[dict[str, Any]]:
    """The sign-in and re-authentication records, oldest first."""
    with live.sessions() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(ACTIONS)).order_by(AuditEvent.seq)
        ).all()
        return [
            {"actor": r.actor, "action": r.action, "subject": r.subject, "data": dict(r.data)}
            for r in rows
        ]


def _user_id(live: Any, email: str) -> str:
    with live.sessions() as session:
        user_id = session.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


def _no_secrets(records: list[dict[str, Any]], *secrets: str) -> None:
    text = orjson.dumps(records).decode()
    for secret in secrets:
        assert secret not in text


def test_web_sign_in_and_reauth_are_audited_without_secrets(
    live: Any, web_clients: Callable[[], WebClient]
) -> None:
    email, stranger = new_email("audit"), new_email("nobody")
    client = web_clients()
    client.sign_up(email)
    user_id = _user_id(live, email)

    wrong = client.post("/signin", {"email": email, "password": WRONG}, csrf_from="/signin")
    unknown = client.post("/signin", {"email": stranger, "password": WRONG}, csrf_from="/signin")
    client.sign_in(email)
    bad_reauth = client.post(
        "/account/reauth",
        {"password": WRONG, "next": "/account/security"},
        csrf_from="/account/reauth",
    )
    client.reauth("/account/security")

    assert (wrong.status_code, unknown.status_code, bad_reauth.status_code) == (422, 422, 422)
    records = _records(live)
    actor = f"resident:{user_id}"
    assert [(r["action"], r["actor"], r["subject"], r["data"].get("reason")) for r in records] == [
        ("account:signin_failed", "anonymous", user_id, "wrong_credentials"),
        ("account:signin_failed", "anonymous", "unknown", "wrong_credentials"),
        ("account:signin", actor, user_id, None),
        ("account:reauth_failed", actor, user_id, "wrong_credentials"),
        ("account:reauth", actor, user_id, None),
    ]
    assert {r["data"]["via"] for r in records} == {"web"}
    assert all(r["data"]["client"] == "127.0.0.1" for r in records)
    _no_secrets(records, WRONG, PASSWORD, stranger)


def test_the_code_step_is_audited(live: Any, web_clients: Callable[[], WebClient]) -> None:
    email = new_email("code")
    client = web_clients()
    client.sign_up(email)
    user_id = _user_id(live, email)
    now = datetime.now(UTC)
    with live.sessions() as session:
        user = session.get(User, user_id)
        assert user is not None
        key = (live.data_dir / "keys" / twofactor.KEY_FILE).read_bytes()
        secret = twofactor.start_enrollment(session, user=user, now=now, key=key)
        assert twofactor.confirm(session, user=user, code=totp.totp(secret, now.timestamp()),
                                 now=now, key=key)  # fmt: skip
        session.commit()
    right = totp.totp(secret, datetime.now(UTC).timestamp())
    wrong_code = f"{(int(right) + 500_000) % 1_000_000:06d}"

    password = client.post("/signin", {"email": email, "password": PASSWORD}, csrf_from="/signin")
    assert password.headers["location"] == "/signin/code"
    refused = client.post("/signin/code", {"code": wrong_code}, csrf_from="/signin/code")

    assert refused.status_code == 422
    [failed] = [r for r in _records(live) if r["action"] == "account:signin_failed"]
    assert (failed["subject"], failed["data"]["via"], failed["data"]["reason"]) == (
        user_id,
        "web_code",
        "wrong_code",
    )
    assert not [r for r in _records(live) if r["action"] == "account:signin"]
    _no_secrets(_records(live), wrong_code, PASSWORD)


def test_api_token_and_remote_unlock_password_are_audited(live: Any) -> None:
    email = new_email("api")
    with httpx.Client(base_url=live.url, timeout=30) as http:
        created = http.post(
            "/v1/residents", json={"email": email, "name": "A", "password": PASSWORD}
        )
        assert created.status_code == 201
        user_id = created.json()["id"]
        form = {"grant_type": "password", "username": email}
        refused = http.post("/v1/auth/token", data={**form, "password": WRONG})
        token = http.post("/v1/auth/token", data={**form, "password": PASSWORD})
        assert (refused.status_code, token.status_code) == (401, 200)
        bearer = {"authorization": f"Bearer {token.json()['access_token']}"}
        # The password is checked before the door is even looked up.
        unlock = http.post(
            "/v1/homes/hom-none/doors/front/unlock", json={"password": WRONG}, headers=bearer
        )
        assert unlock.status_code == 401

    records = [r for r in _records(live) if r["subject"] == user_id]
    assert [(r["action"], r["data"]["via"], r["data"].get("reason")) for r in records] == [
        ("account:signin_failed", "api", "wrong_credentials"),
        ("account:signin", "api", None),
        ("account:reauth_failed", "remote_unlock", "wrong_credentials"),
    ]
    assert records[1]["actor"] == f"resident:{user_id}"
    _no_secrets(records, WRONG, PASSWORD, token.json()["access_token"])


def test_many_wrong_passwords_pause_the_account_and_the_answer_says_nothing(live: Any) -> None:
    """Guessing spread over many addresses meets the account's own limit: after
    `PAUSE_AFTER` wrong passwords the right one is refused too, answered exactly as an
    unknown email is, and recorded as `paused`; the pause ends with its window."""
    email, stranger = new_email("guessed"), new_email("nobody")
    with httpx.Client(base_url=live.url, timeout=30) as http:
        created = http.post(
            "/v1/residents", json={"email": email, "name": "G", "password": PASSWORD}
        )
        user_id = created.json()["id"]
        form = {"grant_type": "password", "username": email}
        token = http.post("/v1/auth/token", data={**form, "password": PASSWORD}).json()
        bearer = {"authorization": f"Bearer {token['access_token']}"}
        wrong = [
            http.post("/v1/auth/token", data={**form, "password": f"{WRONG}-{n}"}).status_code
            for n in range(signins.PAUSE_AFTER)
        ]
        paused = http.post("/v1/auth/token", data={**form, "password": PASSWORD})
        nobody = http.post(
            "/v1/auth/token",
            data={"grant_type": "password", "username": stranger, "password": PASSWORD},
        )
        # The signed-in owner's password, sent to unlock a door, is not checked either.
        unlock = http.post(
            "/v1/homes/hom-none/doors/front/unlock", json={"password": PASSWORD}, headers=bearer
        )

    assert wrong == [401] * signins.PAUSE_AFTER
    assert (paused.status_code, paused.json()) == (nobody.status_code, nobody.json())
    assert unlock.status_code == 401
    reasons = [
        (r["action"], r["data"].get("reason")) for r in _records(live) if r["subject"] == user_id
    ]
    assert reasons == [
        ("account:signin", None),
        *[("account:signin_failed", "wrong_credentials")] * signins.PAUSE_AFTER,
        ("account:signin_failed", "paused"),
        ("account:reauth_failed", "paused"),
    ]
    with live.sessions() as session:
        # The owner is told once that the pause began, not at every attempt after.
        mails = session.execute(
            text("SELECT target, payload FROM outbox WHERE event_type = 'account.signin_paused'")
        ).all()
        assert [target for target, _payload in mails] == [email]
        now = datetime.now(UTC)
        assert signins.paused(session, user_id=user_id, now=now)
        # The paused attempts do not prolong it: once the wrong ones are older than the
        # window, the password is checked again.
        later = now + signins.PAUSE_WINDOW + timedelta(seconds=1)
        assert not signins.paused(session, user_id=user_id, now=later)


def test_a_successful_sign_in_starts_the_count_again(live: Any) -> None:
    email = new_email("typo")
    with httpx.Client(base_url=live.url, timeout=30) as http:
        user_id = http.post(
            "/v1/residents", json={"email": email, "name": "T", "password": PASSWORD}
        ).json()["id"]
        form = {"grant_type": "password", "username": email}
        answers = []
        for _ in range(2):  # typos, then the right one, twice: never PAUSE_AFTER in a row
            for n in range(signins.PAUSE_AFTER - 1):
                answers.append(
                    http.post("/v1/auth/token", data={**form, "password": f"{WRONG}{n}"})
                )
            answers.append(http.post("/v1/auth/token", data={**form, "password": PASSWORD}))
    assert [a.status_code for a in answers] == ([401] * (signins.PAUSE_AFTER - 1) + [200]) * 2
    with live.sessions() as session:
        assert not signins.paused(session, user_id=user_id, now=datetime.now(UTC))


def test_the_phone_apps_sign_ins_are_audited(
    live: Any, web_clients: Callable[[], WebClient]
) -> None:
    email = new_email("courier")
    with live.sessions() as session:
        user_id = create_user(
            session, email=email, name="C", password=PASSWORD, role=Role.COURIER,
            now=datetime.now(UTC),
        ).id  # fmt: skip
        session.commit()
    courier, resident = web_clients(), web_clients()
    resident_email = new_email("resident")
    resident.sign_up(resident_email)

    wrong = courier.post(
        "/courier/signin", {"email": email, "password": WRONG}, csrf_from="/courier/signin"
    )
    right = courier.post(
        "/courier/signin", {"email": email, "password": PASSWORD}, csrf_from="/courier/signin"
    )
    elsewhere = resident.post(
        "/guest/signin", {"email": resident_email, "password": PASSWORD}, csrf_from="/guest/signin"
    )

    assert (wrong.status_code, right.status_code, elsewhere.status_code) == (422, 303, 422)
    records = [
        (r["action"], r["actor"], r["data"]["via"], r["data"].get("reason"))
        for r in _records(live)
        if r["data"].get("via") in ("courier_web", "visitor_web")
    ]
    assert records == [
        ("account:signin_failed", "anonymous", "courier_web", "wrong_credentials"),
        ("account:signin", f"courier:{user_id}", "courier_web", None),
        ("account:signin_failed", "anonymous", "visitor_web", "not_a_visitor"),
    ]
    _no_secrets(_records(live), WRONG, PASSWORD)
