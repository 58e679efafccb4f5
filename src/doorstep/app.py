"""`create_app(settings)`: the access service as an ASGI app. Nothing is built at import.

The app owns the database engine, the issuer keys and the hub link for its lifetime. The
broker it talks to is given to it (`serve` starts a supervised Mosquitto when no broker
URL is configured; tests start their own).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from doorstep import __version__, clips, courier_web, db, metrics, ratelimit, visitor_web, web
from doorstep.access import keys as issuer_keys
from doorstep.access import service as access
from doorstep.access.devices import me_router as my_devices_router
from doorstep.access.devices import router as devices_router
from doorstep.access.router import ENTRY_ROUTE, entry_openapi
from doorstep.access.router import router as access_router
from doorstep.accounts import twofactor
from doorstep.accounts.history import router as history_router
from doorstep.accounts.router import router as accounts_router
from doorstep.clips import live
from doorstep.clock import Clock, SystemClock
from doorstep.deliveries.router import router as deliveries_router
from doorstep.deps import Runtime
from doorstep.errors import (
    DATABASE_BUSY,
    UNEXPECTED,
    DoorstepError,
    InternalError,
    InvalidRequest,
    NotAuthenticated,
    PayloadTooLarge,
    ServiceUnavailable,
)
from doorstep.grants import rotation
from doorstep.grants.providers import router as providers_router
from doorstep.grants.router import router as grants_router
from doorstep.grants.shadow import ShadowPublisher
from doorstep.homes.preferences import router as preferences_router
from doorstep.homes.router import router as homes_router
from doorstep.homes.service import PublicBroker
from doorstep.hotwriter import HotWriter, Jobs
from doorstep.hublink.link import HubLink
from doorstep.live import router as live_router
from doorstep.metrics import Metrics
from doorstep.notify import sealing
from doorstep.notify.dispatcher import Dispatcher
from doorstep.notify.router import router as notify_router
from doorstep.protocol.codes import Reason
from doorstep.protocol.mqtt import BrokerAddress
from doorstep.ratelimit import Limiter
from doorstep.settings import Settings
from doorstep.sql import Writer
from doorstep.web.security import load_or_create_key

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    broker: BrokerAddress | None,
    broker_public: PublicBroker | None = None,
    clock: Clock | None = None,
    on_hub_enrolled: Callable[[], None] = lambda: None,
) -> FastAPI:
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    sessions = db.make_session_factory(engine)
    public = broker_public or (
        PublicBroker(broker.host, broker.port, broker.tls, broker.ca_pem)
        if broker
        else PublicBroker("127.0.0.1", 1883)
    )
    guess_key = load_or_create_key(settings.data_dir / "keys", ratelimit.KEY_FILE)
    runtime = Runtime(
        settings=settings,
        sessions=sessions,
        clock=clock,
        keys=issuer_keys.load_or_create(settings.data_dir / "keys"),
        link=None,
        writer=None,
        login_limiter=Limiter(
            sessions,
            name="sign-in",
            secret=guess_key,
            limit=settings.auth.max_login_failures_per_minute * 6,
            window_seconds=60,
        ),
        claim_limiter=Limiter(
            sessions, name="codes", secret=guess_key, limit=10, window_seconds=60
        ),
        on_hub_enrolled=on_hub_enrolled,
        broker_public=public,
        totp_key=load_or_create_key(settings.data_dir / "keys", twofactor.KEY_FILE),
        webhook_key=load_or_create_key(settings.data_dir / "keys", sealing.KEY_FILE),
        metrics=Metrics(sessions, clock),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        db.migrate(engine, settings.database_owner_url)
        rotation.publish(runtime, settings.data_dir / "keys")
        writer = runtime.writer = Writer(engine, on_batch=runtime.metrics.writer_batch)
        writer.start()
        jobs = Jobs(writer)
        if broker is not None:
            runtime.link = HubLink(
                address=broker,
                writer=writer,
                clock=clock,
                command_expiry_seconds=settings.entry.command_expiry_seconds,
                budget=settings.hublink,
                client_id=settings.broker_client_id,
                on_message=runtime.metrics.hub_message,
            )
            runtime.shadows = ShadowPublisher(
                writer,
                runtime.keys.signer,
                clock,
                runtime.link.publish_desired,
                issuer_keys=runtime.keys.public,
            )
            runtime.link.on_stale_shadow = runtime.shadows.publish
            await runtime.link.start()
            # A database in memory exists in this process only: write here then.
            if settings.writer_process and not db.in_memory(engine):
                runtime.hot = HotWriter(
                    settings,
                    kid=runtime.keys.signer.kid,
                    on_batch=runtime.metrics.writer_batch,
                    on_lost=functools.partial(_end_lost_entries, writer, clock),
                )
                await runtime.hot.start()
                runtime.link.hot = jobs.hot = runtime.hot
        dispatcher = Dispatcher(
            writer=jobs, clock=clock, settings=settings.notify, key=runtime.webhook_key
        )
        dispatcher.start()
        clips.start(_app)
        key_watch = rotation.KeyWatch(runtime, settings.data_dir / "keys")  # `doorstep keys`
        key_watch.start()
        try:
            yield
        finally:
            await key_watch.stop()
            clips.stop(_app)
            # Off the loop: the dispatcher may be waiting for a job of the writer process,
            # whose answer comes through this loop.
            await asyncio.to_thread(dispatcher.stop)
            if runtime.hot is not None:
                await runtime.hot.stop()
            if runtime.link is not None:
                runtime.link.stop()
            writer.stop()
            engine.dispose()

    app = DoorstepApp(title="Doorstep", version=__version__, lifespan=lifespan)
    # Added first, so innermost: its answer passes through the middleware added later
    # (the web's security headers), which Starlette's own last-resort 500 would not.
    app.add_middleware(UnexpectedErrors)
    app.state.runtime = runtime
    app.entry = _entry_app(runtime, settings)
    # Also routed here, first, for a request `DoorstepApp` does not recognise as the hot
    # path (under a root path); and documented in the OpenAPI schema from here.
    app.router.routes.insert(0, ENTRY_ROUTE)
    _document_entry_route(app)
    for router in (
        accounts_router,
        history_router,
        homes_router,
        preferences_router,
        deliveries_router,
        access_router,
        devices_router,
        my_devices_router,
        grants_router,
        providers_router,
        notify_router,
        live_router,
    ):
        app.include_router(router)
    _install_error_handlers(app)
    app.add_api_route("/healthz", _health, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
    clips.install(app)  # entry clips: upload, playback, live view (doorstep.clips)
    web.install(app)  # the resident's pages (doorstep.web)
    courier_web.install(app)  # the courier's app (doorstep.courier_web)
    visitor_web.install(app)  # guests' and providers' app (doorstep.visitor_web)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        larger={
            re.compile(re.escape(clips.UPLOAD_PREFIX)): settings.clips.upload_chunk_bytes,
            # One JPEG of the live view, which the route itself caps.
            LIVE_FRAME_PATH: live.MAX_FRAME_BYTES,
        },
    )
    return app


LIVE_FRAME_PATH = re.compile(r"/v1/hub/live/[^/]+/frame$")


class DoorstepApp(FastAPI):
    """FastAPI, with the courier's entry request (the hot path) answered before FastAPI's
    own middleware stack, by `entry`: a bare Starlette app with the same body limit and
    the same error answers. FastAPI's per-request machinery costs about as much again as
    Starlette's (DESIGN "Known traps"); every other request goes through it as usual."""

    entry: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self.entry
        if (
            entry is not None
            and scope["type"] == "http"
            and scope["path"] == ENTRY_ROUTE.path
            and scope["method"] == "POST"
        ):
            await entry(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _entry_app(runtime: Runtime, settings: Settings) -> ASGIApp:
    handlers: dict[Any, Any] = {DoorstepError: _doorstep_error}
    handlers.update(dict.fromkeys(DATABASE_ERRORS, _database_busy))
    entry = Starlette(
        routes=[ENTRY_ROUTE], exception_handlers=handlers, middleware=[Middleware(UnexpectedErrors)]
    )
    entry.state.runtime = runtime
    return BodyLimit(entry, max_bytes=settings.max_body_bytes)


def _end_lost_entries(writer: Writer, clock: Clock, entry_ids: list[str], reason: Reason) -> None:
    """Entries the writer process may have committed without their commands being
    published (it died deciding them, or their caller had stopped waiting): end them, on
    the writer thread (`access.service.end_unsent`), so that none holds its door until
    its grant expires."""
    job = functools.partial(access.end_unsent, entry_ids=entry_ids, now=clock.now(), reason=reason)
    writer.submit(job).add_done_callback(_log_if_failed)


def _log_if_failed(done: concurrent.futures.Future[int]) -> None:
    if not done.cancelled() and (error := done.exception()) is not None:
        log.error("ending the entries the writer process lost failed: %s", error)


# As SQLAlchemy raises them (ORM sessions), and as the drivers do (the writers' jobs run
# on the driver's connection, in this process or in the writer process).
DATABASE_ERRORS = (OperationalError, sqlite3.OperationalError, psycopg.OperationalError)


async def _database_busy(_r: Request, error: Exception) -> JSONResponse:
    """The request's transaction could not have its turn at the database (SQLite: another
    writer held it past the busy timeout; PostgreSQL: a deadlock or a serialization
    failure): it was rolled back, so nothing changed, no door was opened, and the same
    request can simply be sent again. Any other database error stays a 500
    (`UnexpectedErrors`)."""
    if not db.busy(error):
        raise error
    busy = ServiceUnavailable(DATABASE_BUSY)
    return JSONResponse(busy.body(), status_code=busy.status, headers={"retry-after": "1"})


async def _doorstep_error(_r: Request, exc: DoorstepError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def _document_entry_route(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = entry_openapi(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


def _metrics(request: Request) -> Response:
    """The operator's Prometheus scrape (`doorstep.metrics`); it exists only with
    `metrics_token` set, and answers only that bearer token."""
    runtime: Runtime = request.app.state.runtime
    configured = runtime.settings.metrics_token
    if configured is None:
        raise HTTPException(404, "Not Found")
    if not metrics.token_matches(
        configured.get_secret_value(), request.headers.get("authorization", "")
    ):
        raise NotAuthenticated("the metrics token is required")
    body = generate_latest(runtime.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DoorstepError, _doorstep_error)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
            for e in exc.errors()
        ]
        first = details[0] if details else {"where": "body", "problem": "invalid"}
        error = InvalidRequest(f"{first['where']}: {first['problem']}", details=details)
        return JSONResponse(error.body(), status_code=error.status)

    for raised in DATABASE_ERRORS:
        app.add_exception_handler(raised, _database_busy)

    @app.exception_handler(HTTPException)
    async def _http(_r: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


class BodyLimit:
    """Refuse request bodies over `max_bytes` (413) before any route reads them; a path
    that a pattern of `larger` matches from its start (the hub's clip upload, its live
    frames) has that pattern's limit. A body with a Content-Length is judged by it (the
    server reads no more than it declares); one sent without (chunked) is read here up
    to the limit first, and handed on whole, so a route never starts on a body that
    turns out too large (its own error handling would answer 400 or 500 first)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: dict[re.Pattern[str], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next(
            (size for pattern, size in self.larger.items() if pattern.match(scope["path"])),
            self.max_bytes,
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await _too_large(send, limit)
                return
            await self.app(scope, receive, send)
            return
        body = await _read_up_to(receive, limit)
        if body is None:
            await _too_large(send, limit)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_up_to(receive: Receive, limit: int) -> Message | None:
    """The whole body as one message, or None past `limit` bytes (a disconnect on the way
    is handed on as it came)."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


def _replay(first: Message, receive: Receive) -> Receive:
    """`receive` that gives `first`, then what the server sends (a disconnect)."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _too_large(send: Send, limit: int) -> None:
    body = PayloadTooLarge(f"request body is larger than {limit} bytes").body()
    payload: Any = JSONResponse(body).body
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class UnexpectedErrors:
    """Answer an exception that no handler took with a 500 that tells nothing of it:
    the service's JSON error (`InternalError`), or, to a browser asking for a page
    outside the API, a short HTML page; and log it, once, with the request's method and
    path (never its headers, cookies or body) and a short random reference, shown to the
    client too, that matches a report to its traceback. Nothing is raised on, so neither
    Starlette's `ServerErrorMiddleware` (whose plain-text 500 skips the middleware it
    wraps) nor the server (which logs it again and drops the connection) sees it. An
    exception after the response started can only be logged: the server then ends the
    connection, so the client sees a cut-off answer, not a whole one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            # A reference the client is shown and the log names, so that a report of it
            # finds its traceback. %r: a path is percent-decoded, so it may hold line breaks.
            incident = secrets.token_hex(4)
            log.exception(
                "unexpected error answering %s %r (incident %s)",
                scope["method"], scope["path"], incident,
            )  # fmt: skip
            if not started:
                await _unexpected(scope, incident)(scope, receive, send)


UNEXPECTED_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Something went wrong - Doorstep</title>
</head>
<body>
<h1>Something went wrong</h1>
<p>Doorstep could not complete this request. Try again in a moment.</p>
<p>If it goes on, quote this reference when you report it: <code>{incident}</code></p>
</body>
</html>
"""


def _unexpected(scope: Scope, incident: str) -> Response:
    no_store = {"cache-control": "no-store"}
    accept = Headers(scope=scope).get("accept", "")
    if not scope["path"].startswith("/v1/") and "text/html" in accept:
        page = UNEXPECTED_PAGE.format(incident=incident)
        return HTMLResponse(page, status_code=500, headers=no_store)
    error = InternalError(UNEXPECTED, details={"incident": incident})
    return JSONResponse(error.body(), status_code=error.status, headers=no_store)
