"""Approvals: entries waiting for the resident to say yes or no (approval mode "ask"),
across the resident's homes or for one home, with who is at the door, for which carrier,
at which door, with which parcel, and until when; and the answer, sent through
`access.service.answer_approval` exactly as `POST /v1/entries/{id}/approval` does.

The list is read with one query; other residents' entries never match it (the homes are
joined on their owner). Answering another resident's entry is "not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased
from starlette.responses import HTMLResponse, RedirectResponse, Response

from doorstep.access import service as access
from doorstep.access.models import Entry, EntryState
from doorstep.access.router import run_write
from doorstep.accounts.models import Carrier, User
from doorstep.accounts.service import Principal
from doorstep.deliveries.models import Package
from doorstep.deps import RuntimeDep
from doorstep.errors import InvalidRequest, ServiceUnavailable
from doorstep.homes.models import AccessPoint, Home
from doorstep.web.deps import (
    BriefSessionForm,
    SignedInBrief,
    SignedInDep,
    UnitOfWork,
    WebDep,
    session_csrf,
)
from doorstep.web.reauth import safe_next
from doorstep.web.rendering import NO_STORE, PageRoute, render

PATH = "/approvals"
ANSWERS = {
    "approve": "Approved: the door unlocks for the courier.",
    "decline": "Declined: the courier was told not to come in.",
    "late": "Too late to let the courier in: the time to answer ran out, or the hub is"
    " offline. The door stayed locked.",
}

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Awaiting:
    id: str
    home_id: str
    home_name: str
    timezone: str
    who: str
    carrier: str | None
    door: str
    barcode: str | None
    asked_at: datetime
    deadline: datetime | None


def awaiting(session: Session, *, owner: Principal, home_id: str | None = None) -> list[Awaiting]:
    """The owner's entries awaiting approval, oldest first (the most urgent on top)."""
    courier = aliased(User)
    query = (
        select(Entry, Home, courier.name, Carrier.name, AccessPoint.name, Package.barcode)
        .join(Home, Home.id == Entry.home_id)
        .join(courier, courier.id == Entry.courier_id)
        .outerjoin(Carrier, Carrier.id == courier.carrier_id)
        .outerjoin(AccessPoint, AccessPoint.id == Entry.access_point_id)
        .outerjoin(Package, Package.id == Entry.package_id)
        .where(Home.owner_id == owner.id, Entry.state == EntryState.AWAITING_APPROVAL)
        .order_by(Entry.approval_deadline, Entry.created_at)
    )
    if home_id is not None:
        query = query.where(Home.id == home_id)
    return [
        Awaiting(
            id=entry.id,
            home_id=home.id,
            home_name=home.name,
            timezone=home.timezone,
            who=who,
            carrier=carrier,
            door=door or "Door",
            barcode=barcode,
            asked_at=entry.created_at,
            deadline=entry.approval_deadline,
        )
        for entry, home, who, carrier, door, barcode in session.execute(query).all()
    ]


@router.get(PATH)
def approvals_page(
    request: Request, session: UnitOfWork, user: SignedInDep, web: WebDep, answered: str = ""
) -> HTMLResponse:
    context = {
        "title": "Approvals",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "approvals": awaiting(session, owner=user.principal),
        "notice": ANSWERS.get(answered),
        "live_url": f"{PATH}/live",
        "stream_url": f"{PATH}/stream",
        "back": PATH,
    }
    return render(request, "approvals.html", context)


@router.post("/entries/{entry_id}/approval")
async def answer(
    entry_id: str, form: BriefSessionForm, user: SignedInBrief, runtime: RuntimeDep
) -> Response:
    """Approve or decline, from a page's form; back to that page with what happened."""
    decision = form.get("decision")
    if decision not in ("approve", "decline"):
        raise InvalidRequest("choose approve or decline")
    link, writer = runtime.link, runtime.writer
    if link is None or writer is None:
        raise ServiceUnavailable("the hub link is not running; try again in a minute")
    now = runtime.clock.now()
    result = await run_write(
        writer,
        lambda tx: access.answer_approval(
            tx,
            resident=user.principal,
            entry_id=entry_id,
            approve=decision == "approve",
            now=now,
            settings=runtime.settings.entry,
            signer=runtime.keys.signer,
        ),
    )
    if result.command is not None and result.hub_id is not None:
        link.publish_command(result.hub_id, result.command)
    late = decision == "approve" and result.entry.state == EntryState.DECLINED
    back = safe_next(form.get("back"), PATH).partition("?")[0]
    return RedirectResponse(
        f"{back}?answered={'late' if late else decision}", status_code=303, headers=NO_STORE
    )
