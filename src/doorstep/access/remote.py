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

`remote_lock` is the other direction, "Lock now": no password again (locking makes
nobody's home less safe), but the same ownership and hub checks, a grant of its own
(scope "lock", valid for the command's short life, a fresh token id the hub spends), and
an audit record of the request. How it went is recorded from the hub's journalled
event (`record_lock_outcome`, at ingest: `lock.command`, or `command.refused` for a lock
command), so the outcome reaches the audit log exactly once even when the request that
asked is gone (the service restarted mid-wait, the reply came too late); the request
itself records only the hub's silence (`lock_unanswered`). Another entry in progress at
the door refuses it
(`entry_in_progress`); the resident's own remote unlock does not: the lock ends it, as
the relock would (see `HubAgent._lock` for why the hub draws the same line).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from doorstep.access import service
from doorstep.access.errors import LockRefused
from doorstep.access.models import OPEN_STATES
from doorstep.accounts.service import Principal
from doorstep.audit.service import append_tx
from doorstep.db import new_id
from doorstep.errors import Conflict, NotFound
from doorstep.protocol import Reason
from doorstep.protocol.grants import GrantSigner, new_token_id
from doorstep.protocol.messages import Command, CommandKind, Event, EventKind, Reply
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
    try:
        decision = service._authorize(tx, resident, target, now, settings, signer)
    except service.Denied as exc:  # a concurrent decision took the door since it was read
        raise Conflict("another entry is open at this door; wait for it to end") from exc
    tx.run("UPDATE entries SET method = 'remote' WHERE id = ?", (decision.entry.id,))
    return decision


# --- remote lock -------------------------------------------------------------------------

LOCK_SCOPE = service.LOCK_SCOPE

_LOCK_DOOR = (
    "SELECT h.owner_id, ap.id, ap.hub_id, hub.online, hub.claimed_at, e.id, e.courier_id,"  # noqa: S608
    " e.purpose, e.method"
    " FROM homes h JOIN access_points ap ON ap.home_id = h.id"
    " LEFT JOIN hubs hub ON hub.id = ap.hub_id"
    f" LEFT JOIN entries e ON e.access_point_id = ap.id AND e.state IN ({_OPEN})"
    " WHERE h.id = ? AND ap.slug = ?"
)


@dataclass(frozen=True, slots=True)
class LockOrder:
    """A lock command ready to publish, and what its outcome is recorded against."""

    home_id: str
    slug: str
    access_point_id: str
    hub_id: str
    command: Command
    ends_entry: str | None  # the resident's own remote unlock this lock ends, if any


def remote_lock(
    tx: Tx,
    *,
    resident: Principal,
    home_id: str,
    slug: str,
    now: datetime,
    settings: EntrySettings,
    signer: GrantSigner,
) -> LockOrder:
    """Check the door is the resident's and its hub online, sign a lock grant and record
    the request (a writer job). Raises before anything is sent."""
    row = tx.one(_LOCK_DOOR, (home_id, slug))
    if row is None or row[0] != resident.id:
        raise NotFound("no such door")
    _, point_id, hub_id, online, claimed_at, open_entry, person, purpose, method = row
    if hub_id is None or not online or claimed_at is None:
        raise LockRefused(
            f"the door's hub is offline ({Reason.HUB_OFFLINE}); nothing was sent",
            reason=Reason.HUB_OFFLINE,
        )
    own = purpose == PURPOSE and method == "remote" and person == resident.id
    if open_entry is not None and not own:
        raise LockRefused(
            f"an entry is in progress at this door ({Reason.ENTRY_IN_PROGRESS}); it locks "
            "again by itself when the door closes",
            reason=Reason.ENTRY_IN_PROGRESS,
        )
    token_id = new_token_id()
    command = service.lock_command(hub_id, slug, open_entry or new_id("lck"), token_id, now,
                                   settings, signer)  # fmt: skip
    append_tx(
        tx, at=now, actor=resident.actor, action="door:lock_requested", subject=point_id,
        home_id=home_id, data={"door": slug, "command_id": command.command_id,
                               "kid": signer.kid, "token_id": token_id.hex(),
                               "ends_entry": open_entry},
    )  # fmt: skip
    return LockOrder(home_id, slug, point_id, hub_id, command, open_entry)


LOCK_ADVICE: dict[str, str] = {
    Reason.DOOR_OPEN: "close the door first; a bolt cannot be thrown into an open door.",
    Reason.LOCK_JAMMED: "the bolt jammed; lock it by hand or call someone to check it.",
    Reason.ACTUATOR_FAILED: "the lock did not report locked; check it or try again.",
    Reason.LOCK_NOT_READY: "the lock is offline or busy; try again shortly.",
    Reason.ENTRY_IN_PROGRESS: "an entry is in progress; it locks again when the door closes.",
}


def record_lock_outcome(tx: Tx, *, hub_id: str, event: Event, now: datetime) -> None:
    """At ingest (the first time only): a remote lock's outcome as the hub journalled it,
    `door:locked` or `door:lock_refused` with the reason, under the door it names."""
    data = event.data
    if event.kind == EventKind.LOCK_COMMAND:
        locked = data.get("result") == "locked"
    elif event.kind == EventKind.COMMAND_REFUSED and data.get("kind") == CommandKind.LOCK:
        locked = False
    else:
        return
    slug = data.get("access_point")
    row = tx.one(
        "SELECT ap.id, ap.home_id FROM access_points ap WHERE ap.hub_id = ? AND ap.slug = ?",
        (hub_id, slug if isinstance(slug, str) else ""),
    )
    if row is None:  # a door the service no longer has: the hub event itself is kept
        return
    point_id, home_id = row
    reason = None if locked else str(data.get("reason") or "hub_error")
    append_tx(
        tx, at=now, actor=f"hub:{hub_id}", action="door:locked" if locked else "door:lock_refused",
        subject=point_id, home_id=home_id,
        data={"door": slug, "command_id": data.get("command_id"), "reason": reason,
              "epoch": event.epoch, "seqs": [event.seq]},
    )  # fmt: skip


def record_unanswered(tx: Tx, *, resident: Principal, order: LockOrder, now: datetime) -> None:
    """The hub did not answer in time (`door:lock_unanswered`); should its answer come
    later, its event still records the outcome."""
    append_tx(
        tx, at=now, actor=resident.actor, action="door:lock_unanswered",
        subject=order.access_point_id, home_id=order.home_id,
        data={"door": order.slug, "command_id": order.command.command_id,
              "reason": Reason.HUB_TIMEOUT},
    )  # fmt: skip


def lock_problem(reply: Reply) -> LockRefused | None:
    """The error to answer the resident with, unless the hub verified the door locked."""
    if reply.result == "ok":
        return None
    reason = reply.reason or "hub_error"
    advice = LOCK_ADVICE.get(reason, "check the door.")
    return LockRefused(f"the door did not lock ({reason}): {advice}", reason=reason)
