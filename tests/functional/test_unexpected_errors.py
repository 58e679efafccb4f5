"""An unexpected server error (a route raises what no handler takes): the client gets a
500 that tells nothing of it, in the shape it expects (the service's JSON error, or a
short HTML page for a browser), with the headers every other answer carries; the
server logs it once, with the request's method and path, and keeps the connection.

The error is real: the database loses its token table, so every authenticated request
fails deep in SQLAlchemy (SQLite only: renaming a table is all it takes there).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from sqlalchemy import text

from doorstep.errors import UNEXPECTED
from doorstep.web.security import security_headers

TOKEN = "tok-do-not-log-4f1c"
BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SCRIPT = {"accept": "application/json"}  # what the phone apps' scripts send
INCIDENT = re.compile(r"[0-9a-f]{8}")


def _assert_internal_500(response: httpx.Response) -> str:
    """The service's JSON error for an unexpected one; its incident reference."""
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("internal_error", UNEXPECTED)
    assert set(error["details"]) == {"incident"}
    assert INCIDENT.fullmatch(error["details"]["incident"]), error
    incident: str = error["details"]["incident"]
    return incident


STREAM_PATH = "/v1/test/stream-fails"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'doorstep.db'}"


@pytest.fixture
def extend_app() -> Callable[[FastAPI], None]:
    """A route whose answer fails after it has started (none of the service's own can be
    made to, on demand)."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"first": "chunk"'
        raise RuntimeError("secret detail of a failed stream")

    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="application/json")

    return lambda app: app.add_api_route(STREAM_PATH, stream, methods=["GET"])


@pytest.fixture
def broken(live: Any) -> Any:
    """The live service, its token table gone."""
    with live.sessions() as session:
        session.execute(text("ALTER TABLE access_tokens RENAME TO lost_tokens"))
        session.commit()
    return live


@pytest.fixture
def server_log(live: Any, caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The service's log, and uvicorn's (which does not reach the root logger)."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    uvicorn_log.removeHandler(caplog.handler)


def _assert_reveals_nothing(response: httpx.Response) -> None:
    for internal in ("Traceback", "access_tokens", "SQL", "sqlite", "OperationalError"):
        assert internal not in response.text, response.text


def _assert_page_headers(response: httpx.Response) -> None:
    for name, value in security_headers(https=False):
        assert response.headers.get(name.decode()) == value.decode(), name


def test_api_route_answers_the_json_error_shape(broken: Any) -> None:
    with httpx.Client(base_url=broken.url) as client:
        response = client.get("/v1/homes", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    _assert_internal_500(response)
    _assert_reveals_nothing(response)


def test_courier_entry_route_answers_the_json_error_shape(broken: Any) -> None:
    body = {
        "delivery_id": "d-1",
        "barcode": "B-1",
        "latitude": 51.5,
        "longitude": -0.12,
        "accuracy_m": 5,
        "nobody_answered": False,
    }
    with httpx.Client(base_url=broken.url) as client:
        response = client.post(
            "/v1/courier/entries", json=body, headers={"authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    _assert_internal_500(response)
    _assert_reveals_nothing(response)


@pytest.mark.parametrize(
    ("path", "cookie"),
    [
        ("/homes", "doorstep_session"),  # the resident's app
        ("/courier", "doorstep_courier"),  # the courier's
        ("/guest", "doorstep_guest"),  # guests' and providers'
    ],
)
def test_page_answers_a_short_page_with_the_security_headers(
    broken: Any, path: str, cookie: str
) -> None:
    with httpx.Client(base_url=broken.url, cookies={cookie: TOKEN}) as client:
        response = client.get(path, headers=BROWSER)
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Something went wrong</h1>" in response.text
    _assert_page_headers(response)
    _assert_reveals_nothing(response)


def test_phone_app_script_gets_json_with_the_security_headers(broken: Any) -> None:
    with httpx.Client(base_url=broken.url, cookies={"doorstep_courier": TOKEN}) as client:
        response = client.get("/courier/api/device-keys", headers=SCRIPT)
    assert response.status_code == 500
    _assert_internal_500(response)
    _assert_page_headers(response)


def test_logged_once_with_method_and_path_and_no_secrets(
    broken: Any, server_log: pytest.LogCaptureFixture
) -> None:
    with httpx.Client(base_url=broken.url, cookies={"doorstep_session": TOKEN}) as client:
        failed = client.get("/v1/homes", headers={"authorization": f"Bearer {TOKEN}"})
        page = client.get("/homes", headers=BROWSER)
        # The same connection still serves: by its answer the server is done with the
        # failed requests (a server that logged them again would have by now).
        assert client.get("/healthz").status_code == 200
    assert (failed.status_code, page.status_code) == (500, 500)
    # Each answer names the incident its log line names, and no two are the same.
    incident = _assert_internal_500(failed)
    shown = re.search(r"<code>([0-9a-f]{8})</code>", page.text)
    assert shown is not None, page.text
    assert shown.group(1) != incident
    errors = [r for r in server_log.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.getMessage()) for r in errors] == [
        ("doorstep.app", f"unexpected error answering GET '/v1/homes' (incident {incident})"),
        ("doorstep.app", f"unexpected error answering GET '/homes' (incident {shown.group(1)})"),
    ]
    assert all(r.exc_info is not None for r in errors)
    assert "no such table: access_tokens" in server_log.text  # the traceback is there
    assert TOKEN not in server_log.text


def test_error_after_the_answer_started_is_cut_off_and_logged_once(
    live: Any, server_log: pytest.LogCaptureFixture
) -> None:
    with httpx.Client(base_url=live.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(STREAM_PATH)  # never a whole answer, nor a 500 glued onto one
        assert client.get("/healthz").status_code == 200
    tracebacks = [r for r in server_log.records if r.exc_info is not None]
    [(name, message)] = [(r.name, r.getMessage()) for r in tracebacks]
    assert name == "doorstep.app"
    assert re.fullmatch(
        rf"unexpected error answering GET '{STREAM_PATH}' \(incident [0-9a-f]{{8}}\)", message
    )
