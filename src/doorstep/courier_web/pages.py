"""Courier pages: sign in, sign out, today's stops, and one stop (its notes, the scan, the
knock step, the entry and its live status; the live part is `static/courier.js`).

Sign-in counts against the service's sign-in limiter, like the resident's, and says the
same for an unknown email and a wrong password. Stops come from `courier_web.stops`, which
answers "not found" for a stop that is not this courier's.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.accounts import signins
from doorstep.courier_web import sessions, stops
from doorstep.courier_web.deps import CourierForm, PageCourier
from doorstep.courier_web.rendering import CourierPageRoute, render, to_sign_in
from doorstep.deps import RuntimeDep
from doorstep.errors import NotAuthenticated
from doorstep.permissions import PrincipalRole
from doorstep.protocol.codes import COURIER_ADVICE, Reason
from doorstep.web import sessions as web_sessions
from doorstep.web.deps import UnitOfWork, VisitorForm, WebContext, WebDep, visitor_csrf
from doorstep.web.forms import values
from doorstep.web.phone_session import page_csrf
from doorstep.web.rendering import NO_STORE

VISITOR_COOKIE_SECONDS = 2 * 3600
TOO_MANY = "Too many attempts from this network. Wait a minute, then try again."
WRONG = "Wrong email or password."
NOTICES = {"signed-out": "You are signed out."}

router = APIRouter(route_class=CourierPageRoute, include_in_schema=False)


def _sign_in_page(
    request: Request, web: WebContext, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    """The sign-in form; its CSRF token is bound to the visitor cookie (set if missing)."""
    nonce = request.cookies.get(web.cookies.visitor_cookie) or secrets.token_urlsafe(24)
    shown = {"title": "Courier sign in", "values": {}, "errors": {}, "notice": None, **context}
    response = render(
        request,
        "courier_signin.html",
        {**shown, "csrf_token": visitor_csrf(web, nonce)},
        status=status,
    )
    web.cookies.set(response, web.cookies.visitor_cookie, nonce, max_age=VISITOR_COOKIE_SECONDS)
    return response


@router.get("/courier/signin")
def sign_in_form(request: Request, web: WebDep, notice: str = "") -> HTMLResponse:
    return _sign_in_page(request, web, {"notice": NOTICES.get(notice)})


@router.post("/courier/signin")
def sign_in(
    request: Request, form: VisitorForm, session: UnitOfWork, runtime: RuntimeDep, web: WebDep
) -> Response:
    shown = {"values": values(form, "email")}
    client = request.client.host if request.client else "-"
    if not runtime.login_limiter.allow(client, runtime.clock.timestamp()):
        return _sign_in_page(request, web, {**shown, "errors": {"form": TOO_MANY}}, 429)
    ttl = timedelta(seconds=runtime.settings.auth.token_ttl_seconds)
    now, email = runtime.clock.now(), form.get("email", "")
    try:
        issued = sessions.sign_in(
            session, email=email, password=form.get("password", ""), now=now, ttl=ttl
        )
    except (NotAuthenticated, sessions.NotACourier) as exc:
        signins.sign_in_failed(
            session, subject=signins.user_id_for(session, email), via=signins.Via.COURIER_WEB,
            client=client, now=now,
            reason=signins.failure_of(exc, otherwise=signins.Failure.NOT_A_COURIER),
        )  # fmt: skip
        message = WRONG if isinstance(exc, NotAuthenticated) else "This app is for couriers."
        return _sign_in_page(request, web, {**shown, "errors": {"form": message}}, 422)
    signins.signed_in(session, actor=f"{PrincipalRole.COURIER}:{issued.principal_id}",
                      subject=issued.principal_id, via=signins.Via.COURIER_WEB, client=client,
                      now=now)  # fmt: skip
    cookie = sessions.SESSION.cookie_name(web.cookies)
    previous = request.cookies.get(cookie)
    if previous:
        web_sessions.sign_out(session, token=previous)  # one browser, one courier session
    response = RedirectResponse("/courier", status_code=303, headers=NO_STORE)
    web.cookies.set(response, cookie, issued.access_token, max_age=int(ttl.total_seconds()))
    web.cookies.clear(response, web.cookies.visitor_cookie)
    return response


@router.post("/courier/signout")
def sign_out(
    request: Request, _form: CourierForm, session: UnitOfWork, courier: PageCourier
) -> Response:
    """Ends this session. The phone's key stays registered and in this browser, for the
    next sign-in (the courier or the carrier revokes it through the API)."""
    web_sessions.sign_out(session, token=courier.token)
    return to_sign_in(request, "signed-out")


@router.get("/courier")
def stops_page(
    request: Request, session: UnitOfWork, courier: PageCourier, runtime: RuntimeDep, web: WebDep
) -> HTMLResponse:
    today = stops.today(session, courier=courier.principal, now=runtime.clock.now())
    return render(
        request,
        "courier_stops.html",
        {
            "title": "Today's stops",
            "courier": courier,
            "csrf_token": page_csrf(web, courier),
            "stops": today,
        },
    )


@router.get("/courier/stops/{delivery_id}")
def stop_page(
    delivery_id: str, request: Request, session: UnitOfWork, courier: PageCourier, web: WebDep
) -> HTMLResponse:
    stop = stops.one(session, courier=courier.principal, delivery_id=delivery_id)
    return render(
        request,
        "courier_stop.html",
        {
            "title": stop.home_name,
            "courier": courier,
            "csrf_token": page_csrf(web, courier),
            "stop": stop,
            "open_entry": stops.open_entry(
                session, courier=courier.principal, delivery_id=delivery_id
            ),
            "handover": COURIER_ADVICE[Reason.SOMEONE_ANSWERED],
        },
    )
