"""Passkey pages (`doorstep.accounts.passkeys`): the resident's list, adding one, removing
one, and "Sign in with a passkey".

    GET  /account/passkeys           the list (name, added, last used), "Add a passkey"
    POST /account/passkeys/new       a challenge, and the page that asks the browser for
                                     a new passkey (its script: static/passkeys.js)
    POST /account/passkeys           the browser's answer: verified, kept, audited
    POST /account/passkeys/remove    remove one
    POST /signin/passkey             a challenge for this visitor, and the page that asks
                                     the browser for a passkey
    POST /signin/passkey/finish      the answer: a session, as password and code would

Adding and removing need a recent re-authentication (`doorstep.web.reauth`), coming back
to the list. Both sign-in steps count against the sign-in limiter per client address,
like the password form; a refused answer is recorded as `account:signin_failed` with
`via` `passkey`, a good one as `account:signin`. The browser's answer travels as a form
field (JSON) posted with the page's CSRF token, so these are ordinary form posts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.accounts import passkeys, signins
from doorstep.accounts.passkeys import RelyingParty
from doorstep.deps import Runtime, RuntimeDep
from doorstep.errors import InvalidRequest, NotFound
from doorstep.web import sessions
from doorstep.web.account import TOO_MANY, _start_session, client_address, visitor_page
from doorstep.web.deps import (
    SessionForm,
    SignedInDep,
    UnitOfWork,
    VisitorForm,
    WebContext,
    WebDep,
    session_csrf,
)
from doorstep.web.reauth import ReauthRequired, require_recent_auth
from doorstep.web.rendering import NO_STORE, PageRoute, render

PASSKEYS_PATH = "/account/passkeys"
SIGN_IN_TITLE = "Sign in with a passkey"
NOTICES = {
    "added": "Your passkey is added. Next time, choose \u201cSign in with a passkey\u201d.",
    "removed": "The passkey is removed. Also delete it from your device or password manager.",
}
REFUSED = "That passkey did not work. Try again, or sign in with your email and password."

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _relying_party(runtime: Runtime) -> RelyingParty:
    rp = RelyingParty.of(runtime.settings)
    if rp is None:
        raise NotFound("passkeys need this service to be reached by a name, not an IP address")
    return rp


def _recent(
    request: Request, runtime: RuntimeDep, session: UnitOfWork, user: SignedInDep
) -> sessions.SignedIn:
    """`require_recent_auth`, coming back to the list (the adding page answers a POST)."""
    try:
        return require_recent_auth(request, runtime, session, user)
    except ReauthRequired as exc:
        raise ReauthRequired(exc.message, next_path=PASSKEYS_PATH) from exc


RecentForPasskeys = Annotated[sessions.SignedIn, Depends(_recent)]


@router.get(PASSKEYS_PATH)
def passkey_list(
    request: Request,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    web: WebDep,
    notice: str = "",
) -> HTMLResponse:
    context = {
        "title": "Passkeys",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "passkeys": passkeys.listed(session, user_id=user.user.id),
        "rp_id": runtime.settings.resolved_passkey_rp_id,
        "notice": NOTICES.get(notice),
    }
    return render(request, "passkeys.html", context)


def _adding_page(
    request: Request,
    session: Session,
    runtime: Runtime,
    web: WebContext,
    user: sessions.SignedIn,
    *,
    name: str,
    errors: dict[str, str],
    status: int = 200,
) -> HTMLResponse:
    options = passkeys.registration_options(
        session, rp=_relying_party(runtime), user=user.user, browser=user.digest,
        now=runtime.clock.now(),
    )  # fmt: skip
    context = {
        "title": "Add a passkey",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "options": options,
        "values": {"name": name},
        "errors": errors,
    }
    return render(request, "passkey_new.html", context, status=status)


@router.post(f"{PASSKEYS_PATH}/new")
def new_passkey(
    request: Request,
    _form: SessionForm,
    session: UnitOfWork,
    user: RecentForPasskeys,
    runtime: RuntimeDep,
    web: WebDep,
) -> HTMLResponse:
    device = sessions.device_name(request.headers.get("user-agent", ""))
    return _adding_page(request, session, runtime, web, user, name=device, errors={})


@router.post(PASSKEYS_PATH)
def add_passkey(
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: RecentForPasskeys,
    runtime: RuntimeDep,
    web: WebDep,
) -> Response:
    name = form.get("name", "")
    try:
        passkeys.register(
            session, rp=_relying_party(runtime), user=user.user, actor=user.principal.actor,
            browser=user.digest, response=form.get("credential", ""), name=name,
            now=runtime.clock.now(),
        )  # fmt: skip
    except InvalidRequest as exc:  # the challenge is used up either way: a new one
        field = "form" if isinstance(exc, passkeys.PasskeyRefused) else "name"
        errors = {field: _sentence(exc.message)}
        return _adding_page(request, session, runtime, web, user, name=name, errors=errors,
                            status=422)  # fmt: skip
    return _back("added")


@router.post(f"{PASSKEYS_PATH}/remove")
def remove_passkey(
    form: SessionForm, session: UnitOfWork, user: RecentForPasskeys, runtime: RuntimeDep
) -> Response:
    passkeys.remove(
        session, user_id=user.user.id, passkey_id=form.get("passkey", ""),
        actor=user.principal.actor, now=runtime.clock.now(),
    )  # fmt: skip
    return _back("removed")


def _back(notice: str) -> RedirectResponse:
    return RedirectResponse(f"{PASSKEYS_PATH}?notice={notice}", status_code=303, headers=NO_STORE)


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _sign_in_page(
    request: Request,
    session: Session,
    runtime: Runtime,
    web: WebContext,
    *,
    errors: dict[str, str],
    status: int = 200,
    ask: bool = True,
) -> HTMLResponse:
    """The page asking the browser for a passkey; `ask` False: only the error, no new
    challenge (the limiter said no)."""
    options = None
    if ask:
        nonce = request.cookies.get(web.cookies.visitor_cookie, "")
        options = passkeys.sign_in_options(
            session, rp=_relying_party(runtime), browser=nonce, now=runtime.clock.now()
        )
    context = {"title": SIGN_IN_TITLE, "options": options, "errors": errors}
    return visitor_page(request, web, "signin_passkey.html", context, status)


@router.post("/signin/passkey")
def start_passkey_sign_in(
    request: Request, _form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    if not runtime.login_limiter.allow(client_address(request), runtime.clock.timestamp()):
        return _sign_in_page(request, session, runtime, web, errors={"form": TOO_MANY},
                             status=429, ask=False)  # fmt: skip
    return _sign_in_page(request, session, runtime, web, errors={})


@router.post("/signin/passkey/finish")
def finish_passkey_sign_in(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    if not runtime.login_limiter.allow(client_address(request), runtime.clock.timestamp()):
        return _sign_in_page(request, session, runtime, web, errors={"form": TOO_MANY},
                             status=429, ask=False)  # fmt: skip
    now = runtime.clock.now()
    try:
        user = passkeys.sign_in(
            session, rp=_relying_party(runtime), response=form.get("credential", ""),
            browser=request.cookies.get(web.cookies.visitor_cookie, ""), now=now,
        )  # fmt: skip
    except passkeys.PasskeyRefused as exc:
        counter = isinstance(exc, passkeys.CounterWentBack)
        reason = signins.Failure.PASSKEY_COUNTER if counter else signins.Failure.PASSKEY_REFUSED
        signins.sign_in_failed(session, subject=exc.user_id, via=signins.Via.PASSKEY,
                               client=client_address(request), reason=reason, now=now)  # fmt: skip
        return _sign_in_page(request, session, runtime, web, errors={"form": REFUSED},
                             status=422)  # fmt: skip
    return _start_session(request, session, runtime, web, user, signins.Via.PASSKEY)
