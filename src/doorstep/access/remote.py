"""The resident unlocks their own door from afar: an entry like any other, camera first
and with the relock verified, but authorized by the resident's re-authentication (the
route checks the password, and the second factor when it is on) instead of a delivery or
a grant.

`remote_unlock` runs as one writer job: the home is the resident's, the door exists and
has an online hub, no other entry is open there; then an entry (purpose `resident`,
method `remote`) is authorized with a grant bound to it (no phone key: the resident has
just proven who they are to the service), and the unlock command is returned for the
caller to publish. If nobody opens the door, the lock's auto-relock ends the entry
(`aborted`, `door_never_opened`). The resident is emailed either way, so an unlock they
did not make is noticed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from doorstep.access import service
from doorstep.access.models import OPEN_STATES
from doorstep.accounts.service import Principal
from doorstep.errors import Conflict, NotFound
from doorstep.protocol import Reason
from doorstep.protocol.grants import GrantSigner
from doorstep.settings import EntrySettings
from doorstep.sql import Tx

PURPOSE = "resident"
_OPEN = ", ".join(f"'{state}'" for state in OPEN_STATES)

_DOOR = (
    "SELECT h.owner_id, ap.id, ap.hub_id, hub.online, hub.claimed_at,"  # noqa: S608
    f" (SELECT e.id FROM entries e WHERE e.access_point_id = ap.id AND e.state IN ({_OPEN})"
    "  LIMIT 1)"
    " FROM homes h JOIN access_points ap ON ap.home_id = h.id"
    " LEFT JOIN hubs hub ON hub.id = ap.hub_id WHERE h.id = ? AND ap.slug = ?"
)


def remote_unlock(
    tx: Tx,
    *,
    resident: Principal,
    home_id: str,
    slug: str,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
) -> service.EntryDecision:
    row = tx.one(_DOOR, (home_id, slug))
    if row is None or row[0] != resident.id:
        raise NotFound("no such door")
    _, point_id, hub_id, online, claimed_at, open_entry = row
    if hub_id is None or not online or claimed_at is None:
        raise Conflict(f"the door's hub is offline ({Reason.HUB_OFFLINE}); nothing was sent")
    if open_entry is not None:
        raise Conflict(f"another entry is open at this door ({open_entry}); wait for it to end")
    target = service._Target(None, home_id, point_id, slug, hub_id, None, None)
    target = replace(target, purpose=PURPOSE)
    decision = service._authorize(tx, resident, target, now, settings, signer)
    tx.run("UPDATE entries SET method = 'remote' WHERE id = ?", (decision.entry.id,))
    return decision
