"""A resident's own account history (`accounts.history`): `GET /v1/me/history` and the
page `/account/history` list the records of the caller's account only, newest first, a
page at a time, in plain words with the way in, the client address and why an attempt
was refused, and nothing else of the records' data. Bad parameters are refused and
change nothing; only a signed-in resident gets an answer."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import ViewportSize, expect
from sqlalchemy import select

from doorstep.accounts.models import Role, User
from doorstep.accounts.service import create_user
from doorstep.audit import service as audit
from doorstep.audit.models import AuditEvent

from .conftest import PHONE, Watched
from .support import PASSWORD, WebClient, new_email, session_token, snapshot
from .test_journeys import check_page

HISTORY = "/v1/me/history"
WRONG = "not the password 9"
_RECORD = re.compile(r'id="record-(\d+)"')


def _resident(live: Any, email: str) -> str:
    """A resident signed up through the API; their user id."""
    body = {"email": email, "name": "Pat", "password": PASSWORD}
    assert httpx.post(f"{live.url}/v1/residents", json=body, timeout=30).status_code == 201
    with live.sessions() as session:
        user_id = session.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


def _token(live: Any, email: str, password: str = PASSWORD) -> httpx.Response:
    form = {"grant_type": "password", "username": email, "password": password}
    return httpx.post(f"{live.url}/v1/auth/token", data=form, timeout=30)


def _history(live: Any, token: str | None, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{live.url}{HISTORY}", params=params, headers=headers, timeout=30)


def _seed(live: Any, user_id: str, count: int, **data: Any) -> list[int]:
    """`count` sign-in records for the account, as the sign-in code writes them."""
    with live.sessions() as session:
        seqs = [
            audit.append(
                session,
                at=datetime.now(UTC),
                actor=f"resident:{user_id}",
                action="account:signin",
                subject=user_id,
                data={"via": "web", "client": f"192.0.2.{n}", **data},
            )
            for n in range(count)
        ]
        session.commit()
    return seqs


def _seqs_of(live: Any, user_id: str) -> list[int]:
    with live.sessions() as session:
        rows = session.scalars(
            select(AuditEvent.seq).where(AuditEvent.subject == user_id).order_by(AuditEvent.seq)
        ).all()
    return list(rows)


def test_history_lists_the_callers_own_records_newest_first(live: Any) -> None:
    mine, theirs = new_email("mine"), new_email("theirs")
    my_id, their_id = _resident(live, mine), _resident(live, theirs)
    assert _token(live, mine, WRONG).status_code == 401
    token = _token(live, mine).json()["access_token"]
    assert _token(live, theirs, WRONG).status_code == 401
    their_token = _token(live, theirs).json()["access_token"]

    answer = _history(live, token)

    assert answer.status_code == 200, answer.text
    assert "link" not in answer.headers  # one page holds it all
    items = answer.json()
    assert [(i["action"], i["summary"], i["refused"], i["reason"]) for i in items] == [
        ("account:signin", "Signed in", False, None),
        ("account:signin_failed", "Sign-in refused: wrong password", True, "wrong_credentials"),
        ("account:resident:created", "Account created", False, None),
    ]
    assert [(i["via"], i["client"]) for i in items[:2]] == [("api", "127.0.0.1")] * 2
    assert [i["seq"] for i in items] == sorted(_seqs_of(live, my_id), reverse=True)
    assert items[0]["at"].endswith("Z")
    assert datetime.fromisoformat(items[0]["at"]).tzinfo is not None
    assert WRONG not in answer.text and PASSWORD not in answer.text

    theirs_answer = _history(live, their_token).json()
    assert [i["seq"] for i in theirs_answer] == sorted(_seqs_of(live, their_id), reverse=True)
    assert not {i["seq"] for i in items} & {i["seq"] for i in theirs_answer}


def test_history_passes_on_only_the_safe_fields(live: Any) -> None:
    email = new_email("fields")
    user_id = _resident(live, email)
    token = session_token(live, email)
    _seed(live, user_id, 1, token="tok-should-not-show", note="x" * 500)

    (item, *_) = _history(live, token).json()

    assert set(item) == {"seq", "at", "action", "summary", "refused", "via", "client", "reason"}
    assert (item["via"], item["client"]) == ("web", "192.0.2.0")


def test_history_pages_by_record_with_a_bounded_size(live: Any) -> None:
    email = new_email("pages")
    user_id = _resident(live, email)
    token = session_token(live, email)
    _seed(live, user_id, 7)
    everything = sorted(_seqs_of(live, user_id), reverse=True)  # 7 and the sign-up's
    assert [i["seq"] for i in _history(live, token).json()] == everything

    seen: list[int] = []
    page = _history(live, token, limit=3)
    while True:
        assert page.status_code == 200, page.text
        seqs = [i["seq"] for i in page.json()]
        assert 1 <= len(seqs) <= 3
        seen += seqs
        nxt = page.headers.get("link")
        if nxt is None:
            break
        match = re.fullmatch(r'<(/v1/me/history\?before=(\d+)&limit=3)>; rel="next"', nxt)
        assert match, nxt
        assert int(match.group(2)) == seqs[-1]
        page = httpx.get(f"{live.url}{match.group(1)}", headers=page.request.headers, timeout=30)
    assert seen == everything

    assert [i["seq"] for i in _history(live, token, before=everything[2]).json()] == everything[3:]
    assert _history(live, token, before=everything[-1]).json() == []
    assert len(_history(live, token, limit=100).json()) == len(everything)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"before": 0},
        {"before": -5},
        {"before": "latest"},
    ],
)
def test_bad_parameters_are_refused_and_change_nothing(live: Any, params: dict[str, Any]) -> None:
    email = new_email("bad")
    _resident(live, email)
    token = session_token(live, email)
    before = snapshot(live)

    refused = _history(live, token, **params)

    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_request"
    assert snapshot(live) == before


def test_only_a_signed_in_resident_is_answered(live: Any) -> None:
    assert _history(live, None).status_code == 401
    assert _history(live, "not-a-token").status_code == 401
    courier = new_email("courier")
    with live.sessions() as session:
        create_user(session, email=courier, name="Casey", password=PASSWORD,
                    role=Role.COURIER, now=datetime.now(UTC))  # fmt: skip
        session.commit()
    refused = _history(live, session_token(live, courier))
    assert refused.status_code == 403, refused.text


# --- the page ---------------------------------------------------------------------------


def test_the_page_shows_the_residents_own_history_in_plain_words(
    live: Any, web_clients: Callable[[], WebClient]
) -> None:
    email, other = new_email("page"), new_email("other")
    client, stranger = web_clients(), web_clients()
    client.sign_up(email)
    stranger.sign_up(other)
    wrong = client.post("/signin", {"email": email, "password": WRONG}, csrf_from="/signin")
    assert wrong.status_code == 422, wrong.text
    client.sign_in(email)
    stranger.sign_in(other)
    their_seqs = set(_seqs_of(live, _user_id(live, other)))

    security = client.get("/account/security")
    assert '<a href="/account/history">Account history</a>' in security.text
    page = client.get("/account/history")

    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    shown = [int(seq) for seq in _RECORD.findall(page.text)]
    assert shown == sorted(_seqs_of(live, _user_id(live, email)), reverse=True)
    assert not set(shown) & their_seqs
    text = page.text
    for words in ("Signed in", "Sign-in refused: wrong password", "Account created"):
        assert words in text
    assert "Web app" in text and "127.0.0.1" in text
    assert text.index("Signed in") < text.index("Sign-in refused")  # newest first
    assert WRONG not in text and "<script>" not in text.split("</head>")[1]


def test_the_page_goes_back_a_page_at_a_time(
    live: Any, web_clients: Callable[[], WebClient]
) -> None:
    email = new_email("older")
    client = web_clients()
    client.sign_up(email)
    client.sign_in(email)
    user_id = _user_id(live, email)
    _seed(live, user_id, 55)
    everything = sorted(_seqs_of(live, user_id), reverse=True)

    first = client.get("/account/history")
    shown = [int(seq) for seq in _RECORD.findall(first.text)]
    assert shown == everything[:50]
    older = re.search(r'href="/account/history\?before=(\d+)">Older<', first.text)
    assert older and int(older.group(1)) == everything[49]
    second = client.get(f"/account/history?before={older.group(1)}")
    assert [int(seq) for seq in _RECORD.findall(second.text)] == everything[50:]
    assert ">Older<" not in second.text and '<a href="/account/history">Newest</a>' in second.text
    past = client.get(f"/account/history?before={everything[-1]}")
    assert past.status_code == 200 and "Nothing older is recorded." in past.text


def test_the_page_refuses_a_bad_page_and_asks_to_sign_in(
    live: Any, web_clients: Callable[[], WebClient]
) -> None:
    anonymous = web_clients().get("/account/history")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/signin")
    client = web_clients()
    email = new_email("badpage")
    client.sign_up(email)
    client.sign_in(email)
    for before in ("abc", "0", "-3", "1.5", "\uff11", "9" * 40):
        refused = client.get("/account/history", params={"before": before})
        assert refused.status_code == 422, (before, refused.text)
        assert refused.headers["content-type"].startswith("text/html")


def _user_id(live: Any, email: str) -> str:
    with live.sessions() as session:
        user_id = session.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


def test_history_in_the_browser(live: Any, pages: Callable[[str, ViewportSize], Watched]) -> None:
    email = new_email("browser")
    _resident(live, email)
    phone = pages("history-phone", PHONE)
    page = phone.page
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/homes")

    page.goto("/account/security")
    page.get_by_role("link", name="Account history").click()
    page.wait_for_url("**/account/history")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account history")
    expect(page.locator("ol.history > li").first).to_contain_text("Signed in")
    expect(page.locator("ol.history > li").first).to_contain_text("Web app")
    check_page(phone, "history")
    assert PASSWORD not in page.content()
