"""The JSON the courier app's script reads and sends (`/courier/api/...`).

Request bodies are the courier API's own (`access.schemas.EntryCreate`, `EntryProof`,
`EntryAbort`; `access.devices.DeviceKeyCreate`), so both surfaces accept exactly the same.
"""

from __future__ import annotations

from datetime import datetime

from doorstep.access.schemas import EntryRead
from doorstep.schemas import Output


class CourierEntryRead(EntryRead):
    """An entry as the API shows it, plus what the courier is told about it."""

    step: str  # a short name of what is happening (`progress.Step.step`)
    tone: str  # ok | warn | alert | muted
    headline: str  # the one line in big type
    detail: str  # what to do now; for an ended entry, the advice
    ended: bool
    aborting: bool  # the courier called it off; the door still has to lock
    can_abort: bool
    version: str  # changes whenever the entry changes what the page shows; long-poll with it


class DeviceKeyIdRead(Output):
    id: str
    created_at: datetime
