"""The guest and provider app's own security, on a standalone service (frozen clock, no
broker): sign-in and invitations are rate-limited with the service's limiters and say
the same for every wrong answer; residents are sent to their own app; every page and
JSON route needs the guest session; pages carry no inline script or style and the
service's security headers."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from doorstep.settings import AuthSettings
from doorstep.web.security import CONTENT_SECURITY_POLICY

from .conftest import Standalone
from .support import PASSWORD

_ALERT = re.compile(r'<div class="alert" role="alert"><p>([^<]+)</p>')
INVITATION_GONE = "This invitation is unknown, used or expired. Ask for a new one."


def _alert(html: str) -> str:
    match = _ALERT.search(html)
    return match.group(1) if match else ""


def test_guest_sign_in_is_rate_limited_and_says_the_same_for_every_wrong_answer(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=1))  # 6 tries a minute
    client = app.web()
    client.sign_up("resident@doorstep.test")  # one try: 5 left
    resident = {"email": "resident@doorstep.test", "password": PASSWORD}
    shown = client.post("/guest/signin", resident, csrf_from="/guest/signin")
    assert shown.status_code == 422
    assert _alert(shown.text) == "This app is for guests and service workers."
    for email in ("resident@doorstep.test", "nobody@doorstep.test", "x@doorstep.test"):
        wrong = {"email": email, "password": "not the password"}
        response = client.post("/guest/signin", wrong, csrf_from="/guest/signin")
        assert response.status_code == 422, email
        assert _alert(response.text) == "Wrong email or password.", email
    client.post("/guest/signin", resident, csrf_from="/guest/signin")  # the sixth
    refused = client.post("/guest/signin", resident, csrf_from="/guest/signin")
    assert refused.status_code == 429
    assert "Too many attempts" in _alert(refused.text)
    assert "doorstep_guest" not in str(refused.headers.get_list("set-cookie"))
    app.clock.set(app.clock.now() + timedelta(seconds=61))
    again = client.post("/guest/signin", resident, csrf_from="/guest/signin")
    assert again.status_code == 422  # counted afresh: a resident, still not let in here


def test_invitations_are_rate_limited_and_unknown_ones_say_so(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    client = app.web()
    page = client.get("/guest/accept")
    assert page.status_code == 200 and 'id="no-token"' in page.text  # shown by the script
    guess = {"token": "x" * 43, "password": "a good long password", "name": "Mallory"}
    for _ in range(10):  # the same limit as POST /v1/invitations/accept
        response = client.post("/guest/accept", guess, csrf_from="/guest/accept")
        assert response.status_code == 422
        assert INVITATION_GONE in _ALERT.findall(response.text)
        assert "doorstep_guest" not in str(response.headers.get_list("set-cookie"))
    refused = client.post("/guest/accept", guess, csrf_from="/guest/accept")
    assert refused.status_code == 429
    short = client.post("/guest/accept", {"token": "short", "password": "x"}, csrf_from=None)
    assert short.status_code == 403  # no CSRF token: refused before anything else
    app.clock.set(app.clock.now() + timedelta(seconds=61))
    weak = {**guess, "password": "short"}
    response = client.post("/guest/accept", weak, csrf_from="/guest/accept")
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.text and "At least 10 characters." in response.text
    assert 'value="' + "x" * 43 + '"' in response.text  # kept for the next try, in the body


def test_every_page_needs_a_guest_session_and_carries_the_headers(
    standalone: Callable[..., Standalone],
) -> None:
    client = standalone().web()
    for path in ("/guest", "/guest/grants/agr-1", "/provider", "/provider/prv-1"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/guest/signin", path
    for path in ("/guest/api/device-keys", "/guest/api/entries/ent-1"):
        assert client.get(path).status_code == 401, path
    for path in ("/guest/signin", "/guest/accept", "/guest/static/guest.js", "/guest/nowhere"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff", path
    for path in ("/guest/signin", "/guest/accept"):
        response = client.get(path)
        html = response.text
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["permissions-policy"].endswith("geolocation=(self)"), path
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert " style=" not in html and "<style" not in html, path
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", html), path
