"""Which emails the resident gets: when a courier is let in (entry started) and when an
entry ends (delivered and locked, or the courier did not go in). Alerts (the door did not
lock, stood open, the camera stopped) always go out and have no switch.

The choice is a `notification_choices` row; `doorstep.notify.outbox` reads it when it
queues the resident's email. No row means every email.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.audit import service as audit
from doorstep.deps import RuntimeDep
from doorstep.web.deps import SessionForm, SignedInDep, UnitOfWork, WebDep, session_csrf
from doorstep.web.models import NotificationChoice
from doorstep.web.rendering import NO_STORE, PageRoute, render

PATH = "/account/notifications"
CHOICES = (
    ("entry_started", "A courier is let in", "When your door is unlocked for a delivery."),
    (
        "entry_ended",
        "A delivery is over",
        "Delivered and your door locked, or the courier did not go in.",
    ),
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def choices_of(session: Session, *, user_id: str) -> dict[str, bool]:
    row = session.get(NotificationChoice, user_id)
    return {
        "entry_started": row.entry_started if row else True,
        "entry_ended": row.entry_ended if row else True,
    }


def set_choices(
    session: Session,
    *,
    user_id: str,
    actor: str,
    entry_started: bool,
    entry_ended: bool,
    now: datetime,
) -> None:
    row = session.get(NotificationChoice, user_id)
    if row is None:
        row = NotificationChoice(user_id=user_id, updated_at=now)
        session.add(row)
    row.entry_started, row.entry_ended, row.updated_at = entry_started, entry_ended, now
    audit.append(
        session,
        at=now,
        actor=actor,
        action="account:notifications:set",
        subject=user_id,
        data={"entry_started": entry_started, "entry_ended": entry_ended},
    )


@router.get(PATH)
def notifications_page(
    request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep, saved: str = ""
) -> HTMLResponse:
    context = {
        "title": "Email notifications",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "choices": CHOICES,
        "chosen": choices_of(session, user_id=user.user.id),
        "saved": saved == "1",
    }
    return render(request, "notifications.html", context)


@router.post(PATH)
def save_notifications(
    form: SessionForm, session: UnitOfWork, user: SignedInDep, runtime: RuntimeDep
) -> Response:
    set_choices(
        session,
        user_id=user.user.id,
        actor=user.principal.actor,
        entry_started=form.get("entry_started") == "on",
        entry_ended=form.get("entry_ended") == "on",
        now=runtime.clock.now(),
    )
    return RedirectResponse(f"{PATH}?saved=1", status_code=303, headers=NO_STORE)
