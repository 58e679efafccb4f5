"""Unlock or lock a door from afar: the resident's own remote unlock and "Lock now".

`GET /homes/{id}/unlock` lists the home's doors with an Unlock and a Lock now button each.
Unlocking asks the resident to confirm it is them first (a password re-entry on this
session in the last few minutes, `web.reauth`); then the door unlocks through the entry
engine (`access.remote`: camera first, verified relock, an email to the resident).
Locking asks nothing more than the signed-in session and its CSRF token (the safe
direction; `access.router.remote_lock`) and answers once the hub has verified the bolt
locked and the door shut. Either way the page says how it went; an unlock the hub has
not answered in time is "sent, may still unlock" (202, as in the API), never "refused".
Someone else's home is not found before anything is asked.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from doorstep import db
from doorstep.access import remote
from doorstep.access.router import entry_read, lock_door, run_decision, send_and_await
from doorstep.access.schemas import EntryRead
from doorstep.deps import RuntimeDep
from doorstep.errors import DoorstepError, ServiceUnavailable
from doorstep.homes import service as homes
from doorstep.web.deps import (
    BriefSessionForm,
    SignedInBrief,
    SignedInDep,
    UnitOfWork,
    WebDep,
    session_csrf,
)
from doorstep.web.reauth import require_recent_auth_briefly
from doorstep.web.rendering import PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

OUTCOMES = {
    "unlocked": "Unlocked. It locks again when the door has been opened and closed, or by "
    "itself if nobody opens it; we email you both ways.",
    "refused": "The door refused to unlock",
    "unanswered": "Sent, but the door's hub has not answered yet: the door may still unlock "
    "in a moment. Check its state on the home's page before you count on it being locked.",
    "locked": "Locked. The hub checked that the bolt is thrown and the door is shut.",
}
TITLE = "Lock or unlock a door of {name}"


@router.get("/homes/{home_id}/unlock")
def unlock_page(
    home_id: str, request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep
) -> HTMLResponse:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    context = {
        "title": TITLE.format(name=home.name),
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "home": home,
        "points": homes.access_points(session, home_id=home.id),
        "outcome": None,
    }
    return render(request, "remote.html", context)


@router.post("/homes/{home_id}/doors/{slug}/unlock")
async def unlock_door(
    home_id: str, slug: str, request: Request, _form: BriefSessionForm, runtime: RuntimeDep,
    web: WebDep, user: SignedInBrief,
) -> Response:  # fmt: skip
    with runtime.sessions() as session:
        db.read_only(session)
        home = homes.owned_home(session, owner=user.principal, home_id=home_id)
        points = list(homes.access_points(session, home_id=home.id))
        csrf_token = session_csrf(web, user)
    require_recent_auth_briefly(request, runtime, user)
    if runtime.writer is None or runtime.link is None:
        raise ServiceUnavailable("the hub link is not running")
    now = runtime.clock.now()
    try:
        decision = await run_decision(
            runtime,
            lambda tx: remote.remote_unlock(
                tx, resident=user.principal, home_id=home.id, slug=slug, now=now,
                settings=runtime.settings.entry, signer=runtime.keys.signer,
            ),
        )  # fmt: skip
        sent = await send_and_await(runtime, decision, True)
        outcome = _unlock_outcome(entry_read(sent.entry), unanswered=sent.unanswered)
    except DoorstepError as exc:
        if exc.status == 404:
            raise
        outcome = {"ok": False, "state": "refused", "text": str(exc), "status": 409}
    context = {
        "title": TITLE.format(name=home.name),
        "user": user.user,
        "csrf_token": csrf_token,
        "home": home,
        "points": points,
        "outcome": outcome,
    }
    return render(request, "remote.html", context, status=outcome["status"])


def _unlock_outcome(entry: EntryRead, *, unanswered: bool) -> dict[str, Any]:
    """What the page says, and its status: 202, as the API's, when the hub has not
    answered in time (the entry is still `authorized` and the door may yet unlock)."""
    if entry.state == "unlocked":
        return {"ok": True, "state": "unlocked", "text": OUTCOMES["unlocked"], "status": 200}
    if unanswered and entry.state == "authorized":
        return {"ok": True, "state": "sent", "text": OUTCOMES["unanswered"], "status": 202}
    text = f"{OUTCOMES['refused']} ({entry.reason or entry.state})."
    return {"ok": False, "state": entry.state, "text": text, "status": 409}


@router.post("/homes/{home_id}/doors/{slug}/lock")
async def lock_door_now(
    home_id: str, slug: str, request: Request, _form: BriefSessionForm, runtime: RuntimeDep,
    web: WebDep, user: SignedInBrief,
) -> Response:  # fmt: skip
    """Lock now: no password again (locking opens nothing), the CSRF token as for any
    form; the page answers once the hub has verified the lock, or says why not."""
    with runtime.sessions() as session:
        db.read_only(session)
        home = homes.owned_home(session, owner=user.principal, home_id=home_id)
        points = list(homes.access_points(session, home_id=home.id))
        csrf_token = session_csrf(web, user)
    status = 200
    try:
        await lock_door(runtime, user.principal, home.id, slug)
        outcome = {"ok": True, "state": "locked", "text": OUTCOMES["locked"]}
    except DoorstepError as exc:
        if exc.status == 404:
            raise
        status = exc.status
        outcome = {"ok": False, "state": "not_locked", "text": f"Not locked: {exc}"}
    context = {
        "title": TITLE.format(name=home.name),
        "user": user.user,
        "csrf_token": csrf_token,
        "home": home,
        "points": points,
        "outcome": outcome,
    }
    return render(request, "remote.html", context, status=status)
