"""The entry engine for guests, with a frozen clock: a grant's schedule lets the guest in
exactly inside (both ends, to the second) and denies outside, in the home's time zone,
across a daylight-saving change; revoked, used-up and someone else's grants are denied.

These call the engine (`access.visits.decide_visit`) on the real database, SQLite and
PostgreSQL, as the writer thread does; no hub is involved (an authorized decision is the
command the service would publish)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from doorstep import db
from doorstep.access import visits
from doorstep.access.models import Entry
from doorstep.accounts.models import PrincipalKind, Role
from doorstep.accounts.service import Principal, create_user, issue_token
from doorstep.grants import service as grants
from doorstep.grants.models import Method
from doorstep.grants.schedule import ScheduleKind
from doorstep.homes.models import Hub
from doorstep.homes.service import NewHome, add_access_point, create_home
from doorstep.permissions import PrincipalRole
from doorstep.protocol import Reason
from doorstep.protocol.grants import GrantSigner
from doorstep.settings import EntrySettings
from doorstep.sql import Tx

PARIS = ZoneInfo("Europe/Paris")
SECOND = timedelta(seconds=1)
SETTINGS = EntrySettings(
    require_proof_of_possession=False, home_attempts_per_hour=1000, courier_attempts_per_minute=1000
)
SIGNER = GrantSigner(Ed25519PrivateKey.generate())


@dataclass
class Home:
    sessions: sessionmaker[Session]
    owner: Principal
    home_id: str
    guest_token: str
    other_token: str

    def grant(self, kind: ScheduleKind, **fields: object) -> str:
        spec = grants.GrantSpec(
            access_point="front",
            label="Ana",
            kind=kind,
            method=Method.APP,
            email="ana@example.org",
            **fields,  # type: ignore[arg-type]
        )
        with self.sessions.begin() as session:
            created = grants.create_grant(
                session,
                owner=self.owner,
                home_id=self.home_id,
                spec=spec,
                now=datetime(2026, 1, 1, tzinfo=UTC),
                invite_url="http://127.0.0.1/accept",
            )
            return created.grant.id

    def visit(self, grant_id: str, now: datetime, *, token: str | None = None) -> str:
        """The decision's outcome: 'authorized' or the denial's reason. An authorized
        entry is then closed, so the next attempt is judged on the schedule alone."""
        with self.sessions.begin() as session:
            decision = visits.decide_visit(
                Tx.of_session(session),
                token=token or self.guest_token,
                request=visits.VisitRequest(grant_id),
                now=now,
                settings=SETTINGS,
                signer=SIGNER,
            )
        if not decision.authorized:
            return str(decision.entry.reason)
        with self.sessions.begin() as session:
            session.execute(
                update(Entry)
                .where(Entry.id == decision.entry.id)
                .values(state="done", unlocked_at=now)
            )
        return "authorized"


@pytest.fixture
def home(database_url: str) -> Iterator[Home]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with sessions.begin() as session:
        user = create_user(
            session,
            email="res@example.org",
            name="Res",
            password="x" * 12,
            role=Role.RESIDENT,
            now=now,
        )
        owner = Principal(PrincipalKind.USER, user.id, PrincipalRole.RESIDENT)
        place = create_home(
            session,
            owner=owner,
            now=now,
            data=NewHome("Flat", "1 rue de Rivoli", 48.8566, 2.3522, "Europe/Paris"),
        )
        hub = Hub(id="hub-paris", home_id=place.id, claimed_at=now, online=True, created_at=now)
        session.add(hub)
        session.flush()
        add_access_point(
            session, owner=owner, home_id=place.id, slug="front", name="Front", now=now
        )
        other = create_user(
            session,
            email="eve@example.org",
            name="Eve",
            password="x" * 12,
            role=Role.GUEST,
            now=now,
        )
        long = timedelta(days=3650)
        other_token = issue_token(
            session, kind=PrincipalKind.USER, principal_id=other.id, now=now, ttl=long
        ).access_token
        home_id = place.id
    probe = Home(sessions, owner, home_id, "", other_token)
    first = probe.grant(ScheduleKind.ALWAYS)  # makes Ana's account
    with sessions.begin() as session:
        grantee = session.get(grants.AccessGrant, first).grantee_id
        probe.guest_token = issue_token(
            session,
            kind=PrincipalKind.USER,
            principal_id=grantee,
            now=now,
            ttl=timedelta(days=3650),
        ).access_token
    yield probe
    engine.dispose()


def paris(text: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS, fold=fold).astimezone(UTC)


def test_a_range_admits_exactly_from_its_start_through_its_end(home: Home) -> None:
    grant = home.grant(
        ScheduleKind.RANGE,
        starts_at=datetime(2026, 12, 24, 18, 0),
        ends_at=datetime(2026, 12, 26, 10, 0),
    )
    start, end = paris("2026-12-24T18:00:00"), paris("2026-12-26T10:00:00")
    assert home.visit(grant, start - SECOND) == Reason.OUTSIDE_SCHEDULE
    assert home.visit(grant, start) == "authorized"
    assert home.visit(grant, end) == "authorized"
    assert home.visit(grant, end + SECOND) == Reason.OUTSIDE_SCHEDULE


def test_weekly_windows_admit_on_their_days_only_and_to_the_second(home: Home) -> None:
    grant = home.grant(
        ScheduleKind.WEEKLY, windows=({"days": ["tue", "fri"], "start": "08:30", "end": "12:00"},)
    )
    tuesday = "2026-12-01"
    assert home.visit(grant, paris(f"{tuesday}T08:30:00") - SECOND) == Reason.OUTSIDE_SCHEDULE
    assert home.visit(grant, paris(f"{tuesday}T08:30:00")) == "authorized"
    assert home.visit(grant, paris(f"{tuesday}T12:00:00")) == "authorized"
    assert home.visit(grant, paris(f"{tuesday}T12:00:01")) == Reason.OUTSIDE_SCHEDULE
    # Wednesday at the same hour: not one of its days.
    assert home.visit(grant, paris("2026-12-02T09:00:00")) == Reason.OUTSIDE_SCHEDULE


def test_a_weekly_window_keeps_to_the_wall_clock_across_daylight_saving(home: Home) -> None:
    # Sunday 25 October 2026, Paris: at 03:00 summer time the clocks go back to 02:00.
    grant = home.grant(
        ScheduleKind.WEEKLY, windows=({"days": ["sun"], "start": "07:00", "end": "08:00"},)
    )
    # 07:00 local is 06:00 UTC after the change (it was 05:00 UTC the Sunday before).
    assert home.visit(grant, datetime(2026, 10, 25, 5, 30, tzinfo=UTC)) == Reason.OUTSIDE_SCHEDULE
    assert home.visit(grant, datetime(2026, 10, 25, 6, 0, tzinfo=UTC)) == "authorized"
    assert home.visit(grant, datetime(2026, 10, 18, 5, 0, tzinfo=UTC)) == "authorized"
    # The repeated hour: a window 02:10-02:20 is open during both readings of it.
    night = home.grant(
        ScheduleKind.WEEKLY, windows=({"days": ["sun"], "start": "02:10", "end": "02:20"},)
    )
    assert home.visit(night, paris("2026-10-25T02:15:00", fold=0)) == "authorized"
    assert home.visit(night, paris("2026-10-25T02:15:00", fold=1)) == "authorized"
    assert home.visit(night, paris("2026-10-25T02:25:00", fold=1)) == Reason.OUTSIDE_SCHEDULE


def test_once_admits_one_entry_and_a_use_limit_counts(home: Home) -> None:
    once = home.grant(
        ScheduleKind.ONCE,
        starts_at=datetime(2026, 12, 1, 9, 0),
        ends_at=datetime(2026, 12, 1, 18, 0),
    )
    noon = paris("2026-12-01T12:00:00")
    assert home.visit(once, noon) == "authorized"
    assert home.visit(once, noon + SECOND) == Reason.USES_EXHAUSTED
    twice = home.grant(ScheduleKind.ALWAYS, uses_limit=2)
    assert home.visit(twice, noon) == "authorized"
    assert home.visit(twice, noon) == "authorized"
    assert home.visit(twice, noon) == Reason.USES_EXHAUSTED


def test_revoked_and_someone_elses_grants_are_denied(home: Home) -> None:
    grant = home.grant(ScheduleKind.ALWAYS)
    now = paris("2026-12-01T12:00:00")
    assert home.visit(grant, now, token=home.other_token) == Reason.NOT_GRANTED
    with home.sessions.begin() as session:
        record = grants.owned_grant(session, owner=home.owner, grant_id=grant)
        grants.revoke(session, record, actor=home.owner.actor, now=now)
    assert home.visit(grant, now + SECOND) == Reason.GRANT_REVOKED
