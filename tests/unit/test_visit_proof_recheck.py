"""A visit's grounds checked again when the phone's proof comes, as a courier's are.

Between the hub's challenge and the phone's proof the resident may revoke the guest's
grant, the grant's window may close, the provider may deactivate its worker (or be
deactivated), the resident may block the provider, or the appointment may go to another
worker. The service must not send the unlock then (leaving it to the hub's revocation
list, which may not have arrived yet): the entry ends `denied` with the reason the
visit's decision would give now, on record. Run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine

from doorstep.access import service as access
from doorstep.access import visits
from doorstep.accounts.models import PrincipalKind
from doorstep.accounts.service import Principal
from doorstep.permissions import PrincipalRole
from doorstep.protocol.grants import GrantSigner, public_key_bytes
from doorstep.protocol.messages import Reply
from doorstep.security import token_digest
from doorstep.settings import EntrySettings
from doorstep.sql import Tx
from postgres import committed

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OWNER, GUEST, WORKER, OTHER_WORKER = "usr-owner", "usr-guest", "usr-worker", "usr-worker-2"
HOME, HUB, DOOR, PROVIDER = "home-a", "hub-a", "ap-a", "prv-a"
PASS, APPOINTMENT = "grt-pass", "apt-visit"
KEY = Ed25519PrivateKey.generate()
SETTINGS = EntrySettings(require_proof_of_possession=False)
PHONE = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
)
VISITORS = {
    GUEST: Principal(PrincipalKind.USER, GUEST, PrincipalRole.GUEST),
    WORKER: Principal(PrincipalKind.USER, WORKER, PrincipalRole.WORKER),
}
GRANT_OF = {GUEST: PASS, WORKER: APPOINTMENT}

Job = Callable[[Tx], Any]


def _seed(tx: Tx) -> None:
    """A home with one door on an online hub; a guest's pass to it (always), and a
    provider's appointment (today, 11:00 to 13:00) assigned to one of its two workers.
    The guest and that worker each have a phone key and a token (their user id)."""
    at = tx.time(NOW)
    people = ((OWNER, "resident"), (GUEST, "guest"), (WORKER, "worker"), (OTHER_WORKER, "worker"))
    for user, role in people:
        tx.run("INSERT INTO users (id, email, name, password_hash, role, active, created_at)"
               " VALUES (?, ?, ?, 'x', ?, ?, ?)",
               (user, f"{user}@example.org", user, role, True, at))  # fmt: skip
    for user in VISITORS:
        tx.run("INSERT INTO access_tokens (digest, principal_kind, principal_id, expires_at,"
               " created_at) VALUES (?, 'user', ?, ?, ?)",
               (token_digest(user), user, tx.time(NOW + timedelta(hours=1)), at))  # fmt: skip
        tx.run("INSERT INTO device_keys (id, user_id, point, label, created_at)"
               " VALUES (?, ?, ?, '', ?)", (f"dk-{user}", user, PHONE, at))  # fmt: skip
    tx.run("INSERT INTO homes (id, owner_id, name, address, latitude, longitude, geofence_m,"
           " timezone, in_home_enabled, created_at, allowed_weekdays, approval_mode,"
           " approval_timeout_seconds, pet_notes, placement_notes) VALUES"
           " (?, ?, 'Home', 'Street 1', 0, 0, 50, 'UTC', ?, ?, 127, 'auto', 120, '', '')",
           (HOME, OWNER, True, at))  # fmt: skip
    tx.run("INSERT INTO hubs (id, home_id, online, created_at, public_key, claimed_at, epoch)"
           " VALUES (?, ?, ?, ?, ?, ?, 1)",
           (HUB, HOME, True, at, public_key_bytes(KEY.public_key()), at))  # fmt: skip
    tx.run("INSERT INTO access_points (id, home_id, slug, name, kind, created_at, hub_id)"
           " VALUES (?, ?, 'front', 'Front', 'door', ?, ?)", (DOOR, HOME, at, HUB))  # fmt: skip
    tx.run("INSERT INTO providers (id, name, active, created_at) VALUES (?, 'Cleaners', ?, ?)",
           (PROVIDER, True, at))  # fmt: skip
    for worker in (WORKER, OTHER_WORKER):
        tx.run("INSERT INTO provider_members (provider_id, user_id, role, active, created_at)"
               " VALUES (?, ?, 'worker', ?, ?)", (PROVIDER, worker, True, at))  # fmt: skip
    grants = (
        (PASS, "guest", GUEST, None, "always", None, None),
        (APPOINTMENT, "service", WORKER, PROVIDER, "range", tx.time(NOW - timedelta(hours=1)),
         tx.time(NOW + timedelta(hours=1))),
    )  # fmt: skip
    for grant_id, purpose, grantee, provider, kind, starts_at, ends_at in grants:
        tx.run("INSERT INTO access_grants (id, home_id, access_point_id, purpose, method, label,"
               " grantee_id, provider_id, kind, timezone, starts_at, ends_at, windows,"
               " require_geofence, notes, created_by, created_at)"
               " VALUES (?, ?, ?, ?, 'app', 'Visit', ?, ?, ?, 'UTC', ?, ?, '[]', ?, '', ?, ?)",
               (grant_id, HOME, DOOR, purpose, grantee, provider, kind, starts_at, ends_at,
                False, OWNER, at))  # fmt: skip


def _challenged(engine: Engine, visitor: str) -> str:
    """The visitor's entry, bound to their phone key, whose hub has answered with its
    challenge: the phone's proof comes next. Returns the entry's id."""
    committed(engine, _seed)
    request = visits.VisitRequest(GRANT_OF[visitor], device_key_id=f"dk-{visitor}")
    decision = committed(engine, lambda tx: visits.decide_visit(
        tx, token=visitor, request=request, now=NOW, settings=SETTINGS, signer=GrantSigner(KEY),
    ))  # fmt: skip
    assert decision.command is not None and decision.command.kind == "challenge"
    reply = Reply(command_id=decision.command.command_id, result="ok", challenge="Y2hhbGxlbmdl")
    committed(engine, lambda tx: access.apply_reply(tx, hub_id=HUB, reply=reply, now=NOW))
    return decision.entry.id


def _proves(visitor: str, entry_id: str) -> Job:
    """The phone's proof, a few seconds after the challenge."""
    return lambda tx: access.unlock_with_proof(
        tx, courier=VISITORS[visitor], entry_id=entry_id, proof="cHJvb2Y",
        now=NOW + timedelta(seconds=5), settings=SETTINGS,
    )  # fmt: skip


def _audited(engine: Engine, entry_id: str) -> list[tuple[str, dict[str, Any]]]:
    sql = "SELECT action, data FROM audit_events WHERE subject = ? ORDER BY seq"
    rows = committed(engine, lambda tx: tx.all(sql, (entry_id,)))
    return [
        (action, orjson.loads(data) if isinstance(data, str) else data) for action, data in rows
    ]


def _revoked(grant_id: str) -> Job:
    return lambda tx: tx.run(
        "UPDATE access_grants SET revoked_at = ?, revoked_by = ? WHERE id = ?",
        (tx.time(NOW + timedelta(seconds=1)), f"resident:{OWNER}", grant_id),
    )


def _window_closed(tx: Tx) -> None:
    """The pass's window ends two seconds after the decision (as one made to end then
    would): the proof comes after it."""
    window = (tx.time(NOW - timedelta(hours=1)), tx.time(NOW + timedelta(seconds=2)))
    tx.run("UPDATE access_grants SET kind = 'range', starts_at = ?, ends_at = ? WHERE id = ?",
           (*window, PASS))  # fmt: skip


def _guest_deactivated(tx: Tx) -> None:
    tx.run("UPDATE users SET active = ? WHERE id = ?", (False, GUEST))


def _worker_deactivated(tx: Tx) -> None:
    tx.run("UPDATE provider_members SET active = ? WHERE provider_id = ? AND user_id = ?",
           (False, PROVIDER, WORKER))  # fmt: skip


def _provider_deactivated(tx: Tx) -> None:
    tx.run("UPDATE providers SET active = ? WHERE id = ?", (False, PROVIDER))


def _provider_blocked(tx: Tx) -> None:
    """As `grants.providers.block_provider` does: blocked, its appointments revoked."""
    tx.run("INSERT INTO provider_blocks (home_id, provider_id, created_at) VALUES (?, ?, ?)",
           (HOME, PROVIDER, tx.time(NOW)))  # fmt: skip
    _revoked(APPOINTMENT)(tx)


def _reassigned(tx: Tx) -> None:
    tx.run("UPDATE access_grants SET grantee_id = ? WHERE id = ?", (OTHER_WORKER, APPOINTMENT))


@pytest.mark.parametrize("visitor", [GUEST, WORKER])
def test_a_proof_while_the_grant_holds_sends_the_unlock(
    migrated_engine: Engine, visitor: str
) -> None:
    """The grant is checked again, not its uses: this entry is one of them."""
    entry_id = _challenged(migrated_engine, visitor)

    answer = committed(migrated_engine, _proves(visitor, entry_id))

    assert answer.command is not None and answer.command.kind == "unlock"
    assert answer.command.proof == "cHJvb2Y"


@pytest.mark.parametrize(
    ("visitor", "meanwhile", "reason"),
    [
        (GUEST, _revoked(PASS), "grant_revoked"),
        (GUEST, _window_closed, "outside_schedule"),
        (GUEST, _guest_deactivated, "visitor_inactive"),
        (WORKER, _revoked(APPOINTMENT), "grant_revoked"),
        (WORKER, _worker_deactivated, "visitor_inactive"),
        (WORKER, _provider_deactivated, "visitor_inactive"),
        (WORKER, _provider_blocked, "provider_blocked"),
        (WORKER, _reassigned, "not_granted"),
    ],
    ids=[
        "pass-revoked",
        "pass-window-closed",
        "guest-deactivated",
        "appointment-revoked",
        "worker-deactivated",
        "provider-deactivated",
        "provider-blocked",
        "appointment-reassigned",
    ],
)
def test_a_proof_after_the_visit_lost_its_grounds_is_denied_on_record(
    migrated_engine: Engine, visitor: str, meanwhile: Job, reason: str
) -> None:
    entry_id = _challenged(migrated_engine, visitor)
    committed(migrated_engine, meanwhile)

    answer = committed(migrated_engine, _proves(visitor, entry_id))

    assert answer.command is None  # no unlock goes to the hub
    assert (answer.entry.state, answer.entry.reason) == ("denied", reason)
    assert answer.entry.to_sign is None
    action, data = _audited(migrated_engine, entry_id)[-1]
    assert (action, data["reason"], data["at"]) == ("entry:denied", reason, "proof")
    assert committed(migrated_engine, lambda tx: tx.one(
        "SELECT state, reason, grant_token, challenge FROM entries WHERE id = ?", (entry_id,)
    )) == ("denied", reason, None, None)  # fmt: skip
