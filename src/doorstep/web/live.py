"""JSON for the pages' live parts: one home's status and newest entries.

The pages poll it every two seconds (`static/app.js`, one function to swap for a stream).
Not signed in: 401; another resident's home: 404, as everywhere.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from doorstep.homes import service as homes
from doorstep.homes.models import Home
from doorstep.web.deps import SignedInDep, UnitOfWork
from doorstep.web.rendering import NO_STORE, local_time
from doorstep.web.schemas import EntrySummaryRead, LiveRead, StatusItemRead
from doorstep.web.status import home_status
from doorstep.web.timeline import TimelineEntry, timeline

RECENT_ENTRIES = 5

router = APIRouter(include_in_schema=False)


@router.get("/homes/{home_id}/live", response_model=LiveRead)
def live(home_id: str, session: UnitOfWork, user: SignedInDep, response: Response) -> LiveRead:
    home = homes.owned_home(session, owner=user.principal, home_id=home_id)
    response.headers.update(NO_STORE)
    return LiveRead(
        home_id=home.id,
        status=[StatusItemRead.model_validate(item) for item in home_status(session, home=home)],
        entries=[
            summary(entry, home) for entry in timeline(session, home=home, limit=RECENT_ENTRIES)
        ],
    )


def summary(entry: TimelineEntry, home: Home) -> EntrySummaryRead:
    return EntrySummaryRead(
        id=entry.id,
        who=entry.who,
        how=entry.how,
        at=entry.at,
        when=local_time(entry.at, home.timezone),
        outcome=entry.outcome,
        tone=entry.tone,
        reason=entry.reason,
        flags=list(entry.flags),
    )
