"""Sign-up, tokens (OAuth2 password and client-credentials grants), password changes,
two-step sign-in, carriers, couriers."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from doorstep import security
from doorstep.accounts import passwords, service, signins, totp, twofactor
from doorstep.accounts.models import ApiClient, PrincipalKind, Role, User
from doorstep.accounts.schemas import (
    CarrierCreate,
    CarrierCreated,
    CourierCreate,
    PasswordChange,
    PasswordChanged,
    Reauthentication,
    ResidentCreate,
    TokenRead,
    TwoFactorCode,
    TwoFactorOn,
    TwoFactorPending,
    UserRead,
)
from doorstep.deps import (
    CarrierClient,
    CourierManager,
    Operator,
    Runtime,
    RuntimeDep,
    SessionDep,
)
from doorstep.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotAuthenticated,
    TooManyRequests,
)
from doorstep.permissions import PrincipalRole

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.post("/residents", status_code=201, response_model=UserRead)
def sign_up(
    body: ResidentCreate, request: Request, session: SessionDep, runtime: RuntimeDep
) -> object:
    """A resident account; a taken email is a 409, after the same password hashing as a
    new one. Attempts are counted per client address by the sign-in limiter, apart from
    sign-in attempts, so which emails have accounts cannot be asked at will."""
    client = request.client.host if request.client else "-"
    if not runtime.login_limiter.allow(f"signup:{client}", runtime.clock.timestamp()):
        raise TooManyRequests("too many sign-ups from this address; wait a minute")
    return service.create_user(
        session,
        email=body.email,
        name=body.name,
        password=body.password,
        role=Role.RESIDENT,
        now=runtime.clock.now(),
    )


@router.post("/auth/token", response_model=TokenRead)
async def token(request: Request, runtime: RuntimeDep) -> object:
    """OAuth2 token endpoint: `grant_type=password` (people) or `client_credentials`
    (carrier API clients), form-encoded as RFC 6749 says, or as JSON. With two-step
    sign-in on, the password grant also needs `code` (from the authenticator app, or a
    recovery code), as the web sign-in does. Each attempt is audited
    (`accounts.signins`), without the password, code or secret."""
    form = await _read_form(request)
    key = f"{request.client.host if request.client else '-'}"
    # Off the loop: the count is a write to the database (`doorstep.ratelimit`).
    if not await run_in_threadpool(runtime.login_limiter.allow, key, runtime.clock.timestamp()):
        raise TooManyRequests("too many sign-in attempts; wait a minute")
    # In a worker thread: argon2's deliberate tens of milliseconds, and the write's wait
    # for its turn at the database, must not hold up the event loop (every other
    # request, the hubs' messages) while they run.
    return await run_in_threadpool(_sign_in, runtime, form, key)


def _sign_in(runtime: Runtime, form: dict[str, str], key: str) -> TokenRead:
    ttl = timedelta(seconds=runtime.settings.auth.token_ttl_seconds)
    now = runtime.clock.now()
    with runtime.sessions() as session:
        try:
            kind, principal_id = _authenticate(session, form, now, runtime.totp_key)
        except (NotAuthenticated, twofactor.CodeLocked) as exc:
            reason = (
                signins.Failure.CODE_LOCKED
                if isinstance(exc, twofactor.CodeLocked)
                else signins.failure_of(exc)
            )
            signins.sign_in_failed(
                session, subject=_claimed_account(session, form), via=signins.Via.API,
                client=key, reason=reason, now=now,
            )  # fmt: skip
            session.commit()  # the code's failure count, a spent recovery code
            raise
        issued = service.issue_token(
            session, kind=kind, principal_id=principal_id, now=now, ttl=ttl
        )
        signins.signed_in(session, actor=_actor(session, kind, principal_id), subject=principal_id,
                          via=signins.Via.API, client=key, now=now)  # fmt: skip
        session.commit()
    return TokenRead(access_token=issued.access_token, expires_in=int(ttl.total_seconds()))


def _authenticate(
    session: Session, form: dict[str, str], now: datetime, totp_key: bytes
) -> tuple[PrincipalKind, str]:
    grant = form.get("grant_type")
    if grant == "password":
        user = service.authenticate_password(
            session, email=_field(form, "username"), password=_field(form, "password"), now=now
        )
        _check_second_factor(session, user, form.get("code"), now, totp_key)
        return PrincipalKind.USER, user.id
    if grant == "client_credentials":
        client = service.authenticate_client(
            session, client_id=_field(form, "client_id"), secret=_field(form, "client_secret")
        )
        return PrincipalKind.CLIENT, client.id
    raise InvalidRequest("grant_type must be 'password' or 'client_credentials'")


def _check_second_factor(
    session: Session, user: User, code: str | None, now: datetime, totp_key: bytes
) -> None:
    """With two-step sign-in on, the password alone earns no token: a code is checked
    as at the web sign-in (good once, wrong ones counting toward the account's lock)."""
    if not twofactor.is_on(session, user_id=user.id):
        return
    if not code:
        raise twofactor.CodeRefused("two-step sign-in is on: send the code from the app")
    if not twofactor.verify(session, user_id=user.id, code=code, now=now, key=totp_key):
        raise twofactor.CodeRefused("that code is not right, or was already used")


def _actor(session: Session, kind: PrincipalKind, principal_id: str) -> str:
    """How the audit log names who signed in (as `Principal.actor` does)."""
    if kind == PrincipalKind.CLIENT:
        return f"{PrincipalRole.CARRIER}:{principal_id}"
    user = session.get(User, principal_id)
    return f"{user.role if user else 'user'}:{principal_id}"


def _claimed_account(session: Session, form: dict[str, str]) -> str | None:
    """The account a failed attempt was for, when it names one that exists."""
    if form.get("grant_type") == "password":
        return signins.user_id_for(session, form.get("username", ""))
    client = session.get(ApiClient, form.get("client_id", ""))
    return client.id if client is not None else None


def _field(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} is required")
    return value


async def _read_form(request: Request) -> dict[str, str]:
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            data = orjson.loads(body)
            if not isinstance(data, dict):
                raise InvalidRequest("body must be a JSON object")
            return {k: v for k, v in data.items() if isinstance(v, str)}
        return dict(parse_qsl(body.decode("utf-8"), strict_parsing=bool(body)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("body is not a valid form or JSON object") from exc


@router.post("/me/password", response_model=PasswordChanged)
def change_password(body: PasswordChange, request: Request, runtime: RuntimeDep) -> object:
    """Change the signed-in person's password: the current one is needed (and `code`,
    with two-step sign-in on), and the new one follows the sign-up rules. Every other
    session and API token of the account ends; the token that asked stays. Attempts
    count toward the sign-in limits and are audited (`accounts.passwords`), without the
    passwords or the code; the owner is emailed."""
    token, client = _bearer(request), _limited(request, runtime)
    now = runtime.clock.now()
    # A session of its own, committed before a refusal is raised: the failed attempt and
    # a wrong code's count must stay on record (the request's unit of work would roll back).
    with runtime.sessions() as session:
        principal = service.resolve_token(session, token=token, now=now)
        user = session.get(User, principal.id) if principal.kind == PrincipalKind.USER else None
        if user is None:
            raise Forbidden("only people have passwords")
        _confirm_identity(
            session, runtime, user=user, password=body.current_password, code=body.code,
            now=now, via=signins.Via.API_PASSWORD_CHANGE, client=client,
            refusal="wrong password or code; the password was not changed",
        )  # fmt: skip
        ended = passwords.set_password(
            session, user=user, password=body.new_password, now=now,
            via=signins.Via.API_PASSWORD_CHANGE, client=client,
            keep=security.token_digest(token),
        )  # fmt: skip
        session.commit()
    return PasswordChanged(sessions_ended=ended)


@router.post("/me/two-factor", status_code=201, response_model=TwoFactorPending)
def start_two_factor(body: Reauthentication, request: Request, runtime: RuntimeDep) -> object:
    """Start two-step sign-in for the signed-in resident, with the password again: a new
    key for the authenticator app (replacing one still waiting), answered this once. It
    is on only once `POST /v1/me/two-factor/confirm` takes a code from the app."""
    token, client = _bearer(request), _limited(request, runtime)
    now = runtime.clock.now()
    with runtime.sessions() as session:
        user = _resident(session, token, now)
        _confirm_identity(
            session, runtime, user=user, password=body.password, code=body.code, now=now,
            via=signins.Via.API_TWO_FACTOR, client=client,
            refusal="wrong password or code; nothing was changed",
        )  # fmt: skip
        secret = twofactor.start_enrollment(
            session, user=user, now=now, key=runtime.totp_key,
            via=signins.Via.API_TWO_FACTOR, client=client,
        )  # fmt: skip
        session.commit()
    return TwoFactorPending(
        secret=totp.base32(secret), otpauth_uri=totp.otpauth_uri(secret, account=user.email)
    )


@router.post("/me/two-factor/confirm", response_model=TwoFactorOn)
def confirm_two_factor(body: TwoFactorCode, request: Request, runtime: RuntimeDep) -> object:
    """Turn two-step sign-in on with a code from the app: answers the recovery codes,
    this once, and ends every other session and API token of the account (the token
    that asked stays). Sign-in then asks for a code. Wrong codes count per address, as
    sign-in attempts do, and toward the account's code lock (429 `code_locked`). Each
    refusal is audited (`account:totp_setup:failed`), without the code."""
    token, client = _bearer(request), _limited(request, runtime)
    now = runtime.clock.now()
    with runtime.sessions() as session:
        user = _resident(session, token, now)
        try:
            turned_on = twofactor.turn_on(
                session, user=user, code=body.code, now=now, key=runtime.totp_key,
                keep=security.token_digest(token), via=signins.Via.API_TWO_FACTOR, client=client,
            )  # fmt: skip
        except twofactor.CodeLocked:
            session.commit()  # the refusal's audit record
            raise
        if turned_on is None:
            session.commit()  # the wrong code's count and audit record
            raise InvalidRequest("that code is not right; send the 6 digits the app shows now")
        session.commit()
    return TwoFactorOn(
        recovery_codes=turned_on.recovery_codes, sessions_ended=turned_on.sessions_ended
    )


@router.delete("/me/two-factor", status_code=204)
def turn_off_two_factor(body: Reauthentication, request: Request, runtime: RuntimeDep) -> Response:
    """Turn two-step sign-in off, with the password and a current code (or a recovery
    code): the password alone signs in again, and the recovery codes are gone."""
    token, client = _bearer(request), _limited(request, runtime)
    now = runtime.clock.now()
    with runtime.sessions() as session:
        user = _resident(session, token, now)
        _confirm_identity(
            session, runtime, user=user, password=body.password, code=body.code, now=now,
            via=signins.Via.API_TWO_FACTOR, client=client,
            refusal="wrong password or code; two-step sign-in stays on",
        )  # fmt: skip
        if not twofactor.is_on(session, user_id=user.id):
            raise Conflict("two-step sign-in is not on")
        twofactor.turn_off(session, user=user, now=now, via=signins.Via.API_TWO_FACTOR,
                           client=client)  # fmt: skip
        session.commit()
    return Response(status_code=204)


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("a bearer token is required")
    return token.strip()


def _limited(request: Request, runtime: Runtime) -> str:
    """The client's address, once its attempt is counted toward the sign-in limiter."""
    client = request.client.host if request.client else "-"
    if not runtime.login_limiter.allow(client, runtime.clock.timestamp()):
        raise TooManyRequests("too many attempts; wait a minute")
    return client


def _resident(session: Session, token: str, now: datetime) -> User:
    """The resident whose token this is: two-step sign-in is theirs only for now (the
    courier and visitor apps sign in with the password alone)."""
    principal = service.resolve_token(session, token=token, now=now)
    user = session.get(User, principal.id) if principal.kind == PrincipalKind.USER else None
    if user is None or user.role != Role.RESIDENT:
        raise Forbidden("two-step sign-in is for residents")
    return user


def _confirm_identity(
    session: Session, runtime: Runtime, *, user: User, password: str, code: str | None,
    now: datetime, via: signins.Via, client: str, refusal: str,
) -> None:  # fmt: skip
    """`passwords.confirm_identity`; a refusal is committed (the attempt, and a wrong
    code's count, stay on record) before it is raised."""
    failure = passwords.confirm_identity(
        session, user=user, password=password, code=code, now=now, key=runtime.totp_key,
        via=via, client=client,
    )  # fmt: skip
    if failure is None:
        return
    session.commit()
    if failure == signins.Failure.CODE_LOCKED:
        raise twofactor.CodeLocked("too many wrong codes; wait a few minutes")
    raise NotAuthenticated(refusal)


@router.post("/carriers", status_code=201, response_model=CarrierCreated)
def create_carrier(
    body: CarrierCreate, session: SessionDep, runtime: RuntimeDep, operator: Operator
) -> object:
    carrier, client, secret = service.create_carrier(
        session, name=body.name, now=runtime.clock.now(), actor=operator.actor
    )
    return CarrierCreated(
        id=carrier.id, name=carrier.name, client_id=client.id, client_secret=secret
    )


@router.post("/couriers", status_code=201, response_model=UserRead)
def create_courier(
    body: CourierCreate, session: SessionDep, runtime: RuntimeDep, carrier: CarrierClient
) -> object:
    return service.create_user(
        session,
        email=body.email,
        name=body.name,
        password=body.password,
        role=Role.COURIER,
        carrier_id=carrier.carrier_id,
        now=runtime.clock.now(),
        actor=carrier.actor,
    )


@router.post("/couriers/{courier_id}/suspend", response_model=UserRead)
def suspend_courier(
    courier_id: str, session: SessionDep, runtime: RuntimeDep, manager: CourierManager
) -> object:
    """Stop a courier at once: the next entry request is denied (`courier_inactive`) and
    recorded. The courier's carrier or an operator may do this."""
    return service.set_courier_active(
        session, manager=manager, courier_id=courier_id, active=False, now=runtime.clock.now()
    )


@router.post("/couriers/{courier_id}/reinstate", response_model=UserRead)
def reinstate_courier(
    courier_id: str, session: SessionDep, runtime: RuntimeDep, manager: CourierManager
) -> object:
    return service.set_courier_active(
        session, manager=manager, courier_id=courier_id, active=True, now=runtime.clock.now()
    )
