"""The live JSON the pages read when their event stream says something changed
(`doorstep.web.live`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from doorstep.schemas import Output


class StatusItemRead(Output):
    key: str  # "hub", "lock:<door>", "door:<door>", "battery", "camera"
    label: str
    text: str
    tone: str  # ok | warn | alert | muted


class EntrySummaryRead(Output):
    id: str
    who: str
    how: str
    at: datetime
    when: str  # `at` in the home's time zone, as the page shows it
    outcome: str
    tone: str
    reason: str | None
    flags: list[str] = Field(default_factory=list)


class ApprovalRead(Output):
    id: str
    home_id: str
    home_name: str
    who: str
    carrier: str | None
    door: str
    barcode: str | None
    asked_at: datetime
    asked_when: str
    deadline: datetime | None


class ApprovalsRead(Output):
    approvals: list[ApprovalRead]


class LiveRead(Output):
    home_id: str
    status: list[StatusItemRead]
    entries: list[EntrySummaryRead]
    approvals: list[ApprovalRead] = Field(default_factory=list)
