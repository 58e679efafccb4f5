"""The account's pause after `PAUSE_AFTER` wrong passwords must hold for its whole
window, however many (unchecked, cheap) attempts the guesser sends meanwhile: those
attempts are recorded too, and must not push the wrong passwords out of what the pause
counts, or every hundred or so filler attempts buy another `PAUSE_AFTER` real guesses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from doorstep.accounts import signins
from doorstep.audit.models import AuditEvent
from doorstep.settings import AuthSettings

from .conftest import Standalone
from .support import PASSWORD


def _reasons(app: Standalone, user_id: str) -> list[str]:
    engine = create_engine(app.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            rows = session.scalars(
                select(AuditEvent.data).where(
                    AuditEvent.subject == user_id, AuditEvent.action == "account:signin_failed"
                )
            )
            return [data["reason"] for data in rows]
    finally:
        engine.dispose()


def test_attempts_made_while_paused_do_not_lift_the_pause(
    standalone: Callable[..., Standalone],
) -> None:
    # A generous per-address limit: the guesser has many addresses anyway.
    app = standalone(auth=AuthSettings(max_login_failures_per_minute=100))
    email = "paused-lookback@doorstep.test"
    form = {"grant_type": "password", "username": email}
    with httpx.Client(base_url=app.url, timeout=30) as http:
        created = http.post(
            "/v1/residents", json={"email": email, "name": "P", "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        for n in range(signins.PAUSE_AFTER):
            answer = http.post("/v1/auth/token", data={**form, "password": f"guess-{n}"})
            assert answer.status_code == 401
        app.clock.set(app.clock.now() + timedelta(seconds=61))
        for n in range(150):  # each answered "wrong"; none may be checked
            answer = http.post("/v1/auth/token", data={**form, "password": f"filler-{n}"})
            assert answer.status_code == 401
        app.clock.set(app.clock.now() + timedelta(seconds=61))
        # Still well inside the window: the right password is not checked either.
        right = http.post("/v1/auth/token", data={**form, "password": PASSWORD})
        assert right.status_code == 401, right.text

    reasons = _reasons(app, created.json()["id"])
    assert reasons.count(signins.Failure.WRONG_CREDENTIALS) == signins.PAUSE_AFTER
    assert reasons.count(signins.Failure.PAUSED) == 151
