"""Helpers for the web tests: a browser-like HTTP client, database snapshots, sessions."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from doorstep.accounts.models import PrincipalKind, User
from doorstep.accounts.service import issue_token
from doorstep.audit.models import AuditHead
from doorstep.schema import metadata

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebClient:
    """A browser-like HTTP client: keeps cookies, fills in each form's CSRF token."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def csrf(self, page: str) -> str:
        response = self.http.get(page)
        assert response.status_code == 200, (page, response.status_code)
        match = _CSRF.search(response.text)
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    def post(self, path: str, data: dict[str, str], *, csrf_from: str | None) -> httpx.Response:
        """POST a form, with the CSRF token the page `csrf_from` hands out (None: none)."""
        form = dict(data)
        if csrf_from is not None:
            form["csrf_token"] = self.csrf(csrf_from)
        return self.http.post(path, data=form)

    def sign_up(self, email: str, name: str = "Resident", password: str = PASSWORD) -> None:
        data = {"email": email, "name": name, "password": password}
        response = self.post("/signup", data, csrf_from="/signup")
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/signin?notice=created"

    def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        data = {"email": email, "password": password}
        response = self.post("/signin", data, csrf_from="/signin")
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/homes"
        return response

    def add_home(self, name: str, *, latitude: str = "51.5", longitude: str = "-0.12") -> str:
        data = {
            "name": name,
            "address": f"{name} Road",
            "latitude": latitude,
            "longitude": longitude,
            "timezone": "Europe/London",
            "door": "Front door",
        }
        response = self.post("/homes", data, csrf_from="/homes/new")
        assert response.status_code == 303, response.text
        return response.headers["location"].split("/")[2]

    def reauth(self, next_path: str, password: str = PASSWORD, code: str = "") -> None:
        """Re-enter the password (and a code) so sensitive actions go through."""
        data = {"password": password, "next": next_path, **({"code": code} if code else {})}
        response = self.post("/account/reauth", data, csrf_from=f"/account/reauth?next={next_path}")
        assert response.status_code == 303, response.text
        assert response.headers["location"] == next_path

    def use_session(self, token: str) -> WebClient:
        """Carry `token` as this client's session cookie."""
        host = self.http.base_url.host
        self.http.cookies.set("doorstep_session", token, domain=host, path="/")
        return self

    def close(self) -> None:
        self.http.close()


def session_token(live: Any, email: str) -> str:
    """A fresh session token for the user with `email`, issued as a sign-in would, without
    the password hashing (and the sign-in limiter)."""
    with live.sessions() as session:
        user_id = session.scalar(select(User.id).where(User.email == email))
        assert user_id is not None, email
        issued = issue_token(
            session,
            kind=PrincipalKind.USER,
            principal_id=user_id,
            now=datetime.now(UTC),
            ttl=timedelta(seconds=live.settings.auth.token_ttl_seconds),
        )
        session.commit()
    return issued.access_token


def snapshot(live: Any) -> dict[str, int]:
    """Row counts of every table a request could change, and the audit chain's head."""
    skipped = {"access_tokens", "hub_events", "hub_streams"}
    with live.sessions() as session:
        counts = {
            t.name: session.scalar(select(func.count()).select_from(t)) or 0
            for t in metadata.sorted_tables
            if t.name not in skipped
        }
        head = session.get(AuditHead, 1)
        counts["audit_head"] = head.seq if head else -1
    return counts


def new_email(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}@doorstep.test"
