"""Each hub's shadow, service side: what the hub must hold (keypad codes) and refuse
(tokens of revoked grants), versioned, signed, and what the hub reports it applied.

- `bump` (inside the transaction that changes a grant) raises the hub's version and
  notes the hub in the session, so the route can publish once committed
  (`publish_bumped`).
- `ShadowPublisher.publish` builds the document from the database on the writer thread
  and publishes it, retained, on `doorstep/hubs/{hub}/desired` right after that job's
  commit. The writer runs jobs one at a time, so documents leave in the order they were
  built and the retained one is always the newest. A hub that comes online with an older
  report than the current version gets the document again.
- `bump_enrolled` raises every enrolled hub's version at once: `serve` does it when it
  starts publishing another set of issuer keys (`access.keys`, `grants.rotation`), so
  each hub gets, and reports, a document with the new set.
- `apply_reported` stores the hub's report: the version it applied and each code's state.
  A revocation is enforced at the hub once the reported version reaches the grant's
  `revoked_version`.

The document (see `protocol.shadow`) holds every keypad grant of the hub's doors that is
not revoked, not ended and not used up, with the code sealed to that hub, the token
ids of grants issued for entries of revoked grants that have not expired yet, and the
issuer keys the service publishes (the complete set the hub must trust).

A hub holds at most `MAX_CREDENTIALS` codes. A new code that would take it past that is
refused when made (`grants.service`, which counts `held_codes` under the lock `bump`
takes); should the store hold more anyway, the document keeps the oldest and leaves the
newest out (logged as an error), so it can still be signed and every revocation still
reaches the hub.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from doorstep.clock import Clock
from doorstep.grants.models import HubShadow
from doorstep.homes.models import Hub
from doorstep.protocol.grants import GrantSigner
from doorstep.protocol.messages import b64encode
from doorstep.protocol.shadow import (
    MAX_CREDENTIALS,
    MAX_REVOKED_TOKENS,
    DesiredCredential,
    ReportedDocument,
    sign_shadow,
)
from doorstep.sql import Tx

if TYPE_CHECKING:
    from doorstep.sql import Writer

log = logging.getLogger(__name__)

_BUMPED = "doorstep.shadow.bumped"

# Matter's DaysMask: bit 0 Sunday, bit 1 Monday, ... bit 6 Saturday; ours: bit 0 Monday.
_MATTER_DAY = {day: 1 << ((index + 1) % 7) for index, day in enumerate(
    ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}  # fmt: skip


def bump(session: Session, hub_id: str, now: datetime) -> int:
    """Raise the hub's shadow version in this transaction; returns the new version.

    The hub's shadow row is then held until the transaction ends (PostgreSQL's row lock;
    on SQLite every writing transaction holds the write lock from its start), so what a
    transaction reads of the hub's codes after bumping cannot change under it. The row is
    made on the first bump; two first bumps at once both go through, one after the other
    (`ON CONFLICT DO NOTHING`, then the update)."""
    dialect = session.get_bind().dialect.name
    make = postgresql_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        make(HubShadow)
        .values(hub_id=hub_id, version=0, changed_at=now, reported_version=0, reported="{}")
        .on_conflict_do_nothing(index_elements=[HubShadow.hub_id])
    )
    version = session.execute(
        update(HubShadow)
        .where(HubShadow.hub_id == hub_id)
        .values(version=HubShadow.version + 1, changed_at=now)
        .returning(HubShadow.version)
    ).scalar_one()
    session.info.setdefault(_BUMPED, set()).add(hub_id)
    return int(version)


def bump_enrolled(session: Session, now: datetime) -> dict[str, int]:
    """Raise the shadow version of every enrolled hub; their new versions, by hub id."""
    enrolled = session.scalars(
        select(Hub.id).where(Hub.claimed_at.is_not(None)).order_by(Hub.id)
    ).all()
    return {hub_id: bump(session, hub_id, now) for hub_id in enrolled}


def enrolled_reported_versions(session: Session) -> dict[str, int]:
    """The version each enrolled hub last reported applying (0: none yet), by hub id."""
    rows = session.execute(
        select(Hub.id, HubShadow.reported_version)
        .outerjoin(HubShadow, HubShadow.hub_id == Hub.id)
        .where(Hub.claimed_at.is_not(None))
    ).all()
    return {hub_id: int(version or 0) for hub_id, version in rows}


def bumped_hubs(session: Session) -> set[str]:
    hubs: set[str] = session.info.pop(_BUMPED, set())
    return hubs


_CREDENTIALS = (
    "SELECT g.id, g.label, ap.slug, g.pin_sealed, g.kind, g.starts_at, g.ends_at, g.windows,"
    " g.uses_limit, (SELECT COUNT(*) FROM entries e WHERE e.grant_id = g.id"
    "  AND e.unlocked_at IS NOT NULL)"
    " FROM access_grants g JOIN access_points ap ON ap.id = g.access_point_id"
    " WHERE ap.hub_id = ? AND g.method = 'keypad' AND g.revoked_at IS NULL"
    " AND g.pin_sealed IS NOT NULL AND (g.ends_at IS NULL OR g.ends_at > ?)"
    " ORDER BY g.created_at, g.id"
)
# Tokens issued for entries that can no longer be allowed: their grant was revoked, or
# the worker or guest behind them was deactivated; only those not expired yet.
_REVOKED_TOKENS = (
    "SELECT e.token_id, e.grant_expires_at FROM entries e"
    " JOIN access_grants g ON g.id = e.grant_id"
    " LEFT JOIN users u ON u.id = e.courier_id"
    " LEFT JOIN provider_members pm ON pm.provider_id = g.provider_id AND pm.user_id = u.id"
    " WHERE e.hub_id = ? AND e.token_id IS NOT NULL AND e.grant_expires_at > ?"
    " AND (g.revoked_at IS NOT NULL OR u.active = ? OR pm.active = ?)"
    " ORDER BY e.grant_expires_at DESC LIMIT ?"
)


def _schedule_fields(
    start: datetime | None, end: datetime | None, windows: list[dict[str, Any]], zone: ZoneInfo
) -> dict[str, Any]:
    """When a keypad code may open the door, in the desired document's terms."""
    return {
        "valid_from": int(start.timestamp()) if start else None,
        "valid_until": int(end.timestamp()) if end else None,
        "week_days": [_week_day(window) for window in windows],
        "year_days": _year_days(start, end, zone),
    }


def lock_schedule_problem(
    start: datetime | None, end: datetime | None, windows: list[dict[str, Any]], zone: ZoneInfo
) -> str | None:
    """Why a keypad code with this schedule cannot be programmed on a lock (a start
    before 2000, where the lock's year-day schedules begin; a range that ends before it
    starts on the home's wall clock), or None. Checked when a keypad grant is made."""
    placeholder = {"id": "agr-check", "access_point": "front", "name": "check", "pin": "AA"}
    try:
        DesiredCredential.model_validate(
            {**placeholder, **_schedule_fields(start, end, windows, zone)}
        )
    except (ValidationError, ValueError, OverflowError) as error:
        if isinstance(error, ValidationError):  # pydantic's words, without its prefix
            return str(error.errors()[0]["msg"]).removeprefix("Value error, ")
        return str(error)
    return None


def build_desired(
    tx: Tx,
    *,
    hub_id: str,
    now: datetime,
    signer: GrantSigner,
    issuer_keys: Mapping[str, bytes] | None = None,
) -> bytes | None:
    """The hub's signed desired document as of now; None for a hub with no shadow yet.
    `issuer_keys`: every key the hub must trust (the signer's among them); None leaves
    them out of the document, and the hub keeps the ones it has."""
    row = tx.one(
        "SELECT s.version, h.timezone FROM hub_shadows s JOIN hubs hub ON hub.id = s.hub_id"
        " JOIN homes h ON h.id = hub.home_id WHERE s.hub_id = ?",
        (hub_id,),
    )
    if row is None:
        return None
    version, timezone = int(row[0]), str(row[1])
    credentials = _credentials(tx, hub_id, now, ZoneInfo(timezone))
    if len(credentials) > MAX_CREDENTIALS:
        # New codes are refused past the limit (`grants.service`); should more be stored
        # anyway, the newest stay off the lock (fail closed) rather than keep a document
        # the hub would refuse, with every revocation in it, from being signed at all.
        left_out = [credential["id"] for credential in credentials[MAX_CREDENTIALS:]]
        log.error("hub %s has %d keypad codes, more than %d; the newest left out: %s",
                  hub_id, len(credentials), MAX_CREDENTIALS, ", ".join(left_out))  # fmt: skip
        credentials = credentials[:MAX_CREDENTIALS]
    revoked = [
        {"token_id": token_id, "expires": int(expires.timestamp())}
        for token_id, expires in (
            (token, tx.parse_time(at))
            for token, at in tx.all(
                _REVOKED_TOKENS, (hub_id, tx.time(now), False, False, MAX_REVOKED_TOKENS)
            )
        )
        if expires is not None
    ]
    document = {
        "v": 1,
        "hub": hub_id,
        "version": version,
        "issued_at": int(now.timestamp()),
        "timezone": timezone,
        "credentials": credentials,
        "revoked_tokens": revoked,
    }
    if issuer_keys is not None:
        document["issuer_keys"] = {kid: b64encode(raw) for kid, raw in issuer_keys.items()}
    return sign_shadow(document, signer.private_key, signer.kid)


def held_codes(tx: Tx, *, hub_id: str, now: datetime) -> int:
    """How many keypad codes the hub's desired document would hold as of now, before
    the `MAX_CREDENTIALS` cap: those of all its doors, not revoked, not ended, not used
    up and with a schedule a lock can hold."""
    row = tx.one(
        "SELECT h.timezone FROM hubs hub JOIN homes h ON h.id = hub.home_id WHERE hub.id = ?",
        (hub_id,),
    )
    return 0 if row is None else len(_credentials(tx, hub_id, now, ZoneInfo(str(row[0]))))


def _credentials(tx: Tx, hub_id: str, now: datetime, zone: ZoneInfo) -> list[dict[str, Any]]:
    """The hub's keypad codes in force or to come, oldest first, as document entries."""
    credentials = []
    for grant_id, label, slug, sealed, kind, starts, ends, windows, limit, used in tx.all(
        _CREDENTIALS, (hub_id, tx.time(now))
    ):
        limit = 1 if kind == "once" else limit
        remaining = None if limit is None else max(int(limit) - int(used), 0)
        if remaining == 0:
            continue
        start, end = tx.parse_time(starts), tx.parse_time(ends)
        credential = {
            "id": grant_id,
            "access_point": slug,
            "name": _lock_name(label),
            "pin": sealed,
            **_schedule_fields(start, end, orjson.loads(windows), zone),
            "uses": remaining,
        }
        try:
            DesiredCredential.model_validate(credential)
        except ValidationError:
            # One code the lock cannot hold (a start before 2000, a range that ends
            # before it starts on the wall clock) stays off it; it must not keep the
            # whole document, with every revocation in it, from reaching the hub. New
            # grants are checked when made (`lock_schedule_problem`); this is for those
            # made before that check.
            log.warning("keypad grant %s cannot be sent to hub %s; left out", grant_id, hub_id)
            continue
        credentials.append(credential)
    return credentials


def _lock_name(label: str) -> str:
    """Matter's UserName holds 10 characters."""
    return label.strip()[:10] or "guest"


def _week_day(window: dict[str, Any]) -> dict[str, Any]:
    days = 0
    for day in window["days"]:
        days |= _MATTER_DAY[day]
    return {"days": days, "start": window["start"], "end": window["end"]}


def _year_days(start: datetime | None, end: datetime | None, zone: ZoneInfo) -> list[Any]:
    """A date range as the lock's year-day schedule, on its local wall clock."""
    if start is None or end is None:
        return []
    fmt = "%Y-%m-%dT%H:%M:%S"
    return [
        {"start": start.astimezone(zone).strftime(fmt), "end": end.astimezone(zone).strftime(fmt)}
    ]


def apply_reported(tx: Tx, *, hub_id: str, payload: bytes, now: datetime) -> bool:
    """Store the hub's report of what it applied. Reports of a version the service never
    issued are ignored (a hub cannot claim to be ahead)."""
    report = ReportedDocument.model_validate_json(payload)
    if report.hub != hub_id:
        return False
    changed = tx.run(
        "UPDATE hub_shadows SET reported_version = ?, reported_at = ?, reported = ?"
        " WHERE hub_id = ? AND version >= ? AND reported_version <= ?",
        (report.version, tx.time(now), orjson.dumps(report.credentials).decode(), hub_id,
         report.version, report.version),
    )  # fmt: skip
    return changed > 0


def needs_publish(tx: Tx, hub_id: str) -> bool:
    row = tx.one("SELECT version, reported_version FROM hub_shadows WHERE hub_id = ?", (hub_id,))
    return row is not None and int(row[1]) < int(row[0])


class ShadowPublisher:
    """Builds and publishes hubs' desired documents (see the module docstring)."""

    def __init__(
        self,
        writer: Writer,
        signer: GrantSigner,
        clock: Clock,
        send: Callable[[str, bytes], None],
        issuer_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        self._writer = writer
        self._keys = (signer, issuer_keys)  # one attribute: swapped whole (`use_keys`)
        self._clock = clock
        self._send = send

    def use_keys(self, signer: GrantSigner, issuer_keys: Mapping[str, bytes]) -> None:
        """Sign with `signer` and name `issuer_keys` from the next document built on (the
        service took up changed keys: `grants.rotation`)."""
        self._keys = (signer, issuer_keys)

    def publish(self, hub_id: str) -> None:
        def job(tx: Tx) -> bytes | None:
            try:
                # Built again if the keys were swapped meanwhile: a document must name the
                # keys current when its version was read (`grants.rotation` swaps them
                # before it raises the versions).
                while True:
                    keys = self._keys
                    payload = build_desired(
                        tx,
                        hub_id=hub_id,
                        now=self._clock.now(),
                        signer=keys[0],
                        issuer_keys=keys[1],
                    )
                    if keys is self._keys:
                        return payload
            except Exception:  # the document could not be built: say so; the next change
                log.exception("desired document for hub %s not published", hub_id)  # retries
                return None

        def then(payload: bytes | None) -> None:
            if payload is not None:
                self._send(hub_id, payload)

        self._writer.submit(job, then=then)


def reported_state(session: Session, hub_id: str) -> tuple[int, int, dict[str, str]]:
    """(version, reported version, code states) of a hub; zeros if it has no shadow."""
    row = session.scalar(select(HubShadow).where(HubShadow.hub_id == hub_id))
    if row is None:
        return 0, 0, {}
    return row.version, row.reported_version, orjson.loads(row.reported)
