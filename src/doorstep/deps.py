"""Request dependencies, as `Annotated` aliases so routes read like prose."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from doorstep import db
from doorstep.accounts.service import Principal, resolve_token
from doorstep.clock import Clock
from doorstep.errors import Forbidden, NotAuthenticated
from doorstep.permissions import Permission
from doorstep.ratelimit import Limiter
from doorstep.settings import Settings

if TYPE_CHECKING:
    from doorstep.access.keys import IssuerKeys
    from doorstep.grants.shadow import ShadowPublisher
    from doorstep.homes.service import PublicBroker
    from doorstep.hotwriter import HotWriter
    from doorstep.hublink.link import HubLink
    from doorstep.metrics import Metrics
    from doorstep.sql import Writer


@dataclass
class Runtime:
    """Everything a request may need, built once by `create_app`."""

    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock
    keys: IssuerKeys
    link: HubLink | None
    writer: Writer | None
    login_limiter: Limiter
    claim_limiter: Limiter
    on_hub_enrolled: Callable[[], None]
    broker_public: PublicBroker  # what hubs are told at enrollment
    totp_key: bytes  # seals residents' authenticator keys (`accounts.twofactor`)
    webhook_key: bytes  # seals carriers' webhook secrets (`notify.sealing`)
    metrics: Metrics  # this process's counters and the scrape (`doorstep.metrics`)
    shadows: ShadowPublisher | None = None  # hubs' desired documents (`grants.shadow`)
    hot: HotWriter | None = None  # the hot paths' writer process (`doorstep.hotwriter`)


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request, runtime: RuntimeDep) -> Iterator[Session]:
    """The API request's unit of work: committed when the route returns, else rolled
    back. A GET (HEAD, OPTIONS) only reads: its transaction is read-only
    (`db.read_only`), so a resident's app never waits for the entry decisions' turn nor
    holds one up, and a route that tried to write on a GET would fail at once."""
    yield from _unit_of_work(runtime, reading=request.method in READ_METHODS)


def get_writing_session(runtime: RuntimeDep) -> Iterator[Session]:
    """A unit of work that may write whatever the method: the web app's, whose signed-in
    pages slide their session's expiry on every view, and `WritingSessionDep`'s."""
    yield from _unit_of_work(runtime, reading=False)


def _unit_of_work(runtime: Runtime, *, reading: bool) -> Iterator[Session]:
    with runtime.sessions() as session:
        if reading:
            db.read_only(session)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# scope="function": the session commits before the response is sent, so a client never
# sees a 201 for data that is not stored yet (FastAPI's default for yield dependencies
# runs their exit after the response).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
# For the few GET routes that write: one that audits a view, one that makes a row on
# first use.
WritingSessionDep = Annotated[Session, Depends(get_writing_session, scope="function")]


def get_principal(request: Request, runtime: RuntimeDep, session: SessionDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("a bearer token is required")
    return resolve_token(session, token=token.strip(), now=runtime.clock.now())


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Callable[[Principal], Principal]:
    def check(principal: PrincipalDep) -> Principal:
        if not principal.can(permission):
            raise Forbidden(f"this account may not {permission}")
        return principal

    return check


Resident = Annotated[Principal, Depends(require(Permission.HOMES_MANAGE))]
Courier = Annotated[Principal, Depends(require(Permission.ENTRIES_REQUEST))]
CarrierClient = Annotated[Principal, Depends(require(Permission.DELIVERIES_BOOK))]
CourierManager = Annotated[Principal, Depends(require(Permission.COURIERS_MANAGE))]
Operator = Annotated[Principal, Depends(require(Permission.CARRIERS_MANAGE))]
Reader = Annotated[Principal, Depends(require(Permission.ENTRIES_READ))]
Visitor = Annotated[Principal, Depends(require(Permission.VISITS_REQUEST))]
ProviderPerson = Annotated[Principal, Depends(require(Permission.PROVIDERS_WORK))]


def require_entrant(principal: PrincipalDep) -> Principal:
    """A courier, a guest or a provider worker: anyone who enters with a phone key."""
    if not (principal.can(Permission.ENTRIES_REQUEST) or principal.can(Permission.VISITS_REQUEST)):
        raise Forbidden("only couriers, guests and provider workers hold phone keys")
    return principal


Entrant = Annotated[Principal, Depends(require_entrant)]


def require_briefly(permission: Permission) -> Callable[[Request, Runtime], Principal]:
    """Like `require`, but on a session of its own that is closed before the route runs.

    For async routes that go on to queue work for the writer thread: a request session
    held open across that wait would hold SQLite's write lock (sessions begin with
    BEGIN IMMEDIATE) and the writer would wait on it until its timeout."""

    def check(request: Request, runtime: RuntimeDep) -> Principal:
        with runtime.sessions() as session:
            db.read_only(session)
            principal = get_principal(request, runtime, session)
        if not principal.can(permission):
            raise Forbidden(f"this account may not {permission}")
        return principal

    return check


ResidentBrief = Annotated[Principal, Depends(require_briefly(Permission.HOMES_MANAGE))]
CourierBrief = Annotated[Principal, Depends(require_briefly(Permission.ENTRIES_REQUEST))]
VisitorBrief = Annotated[Principal, Depends(require_briefly(Permission.VISITS_REQUEST))]
