"""A claim code is redeemed once, even by two hubs at the same moment: on PostgreSQL
(READ COMMITTED) both redemptions could read the code as unused before either wrote;
the second must then find it spent, not pin its own key and broker password over the
first hub's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from doorstep import db
from doorstep.accounts.models import PrincipalKind, User
from doorstep.accounts.service import Principal
from doorstep.errors import NotAuthenticated
from doorstep.homes import service
from doorstep.homes.models import Hub
from doorstep.permissions import PrincipalRole
from doorstep.protocol.grants import public_key_bytes
from polling import wait_until

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OWNER = Principal(PrincipalKind.USER, "usr-owner", PrincipalRole.RESIDENT)


def _hub_with_code(sessions: sessionmaker[Session]) -> tuple[str, str]:
    with sessions() as session:
        session.add(User(id=OWNER.id, email="owner@example.org", name="Owner",
                         password_hash="x", role="resident", active=True,
                         created_at=NOW))  # fmt: skip
        session.flush()
        home = service.create_home(
            session,
            owner=OWNER,
            data=service.NewHome("Home", "Street 1", 52.0, 4.0, "UTC"),
            now=NOW,
        )
        claim = service.create_hub(
            session, owner=OWNER, home_id=home.id, now=NOW, claim_ttl=timedelta(hours=1)
        )
        session.commit()
        return claim.hub.id, claim.claim_code


def _waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


def test_two_hubs_redeeming_one_code_at_once_enroll_only_the_first(pg_engine: Engine) -> None:
    sessions = db.make_session_factory(pg_engine)
    hub_id, code = _hub_with_code(sessions)
    first_key = public_key_bytes(Ed25519PrivateKey.generate().public_key())
    second_key = public_key_bytes(Ed25519PrivateKey.generate().public_key())

    def second_claim() -> bytes:
        with sessions() as session:
            enrollment = service.claim_hub(
                session, code=code, public_key=second_key, now=NOW + timedelta(seconds=1)
            )
            session.commit()
            return bytes(enrollment.hub.public_key or b"")

    with sessions() as first, ThreadPoolExecutor(1) as pool:
        service.claim_hub(first, code=code, public_key=first_key, now=NOW)
        first.flush()  # the first redemption has written, not yet committed
        racing = pool.submit(second_claim)
        wait_until(lambda: _waiting_on_a_lock(pg_engine), 10, "the second claim to wait")
        first.commit()
        with pytest.raises(NotAuthenticated):
            racing.result(timeout=10)

    with sessions() as session:
        hub = session.get(Hub, hub_id)
        assert hub is not None and bytes(hub.public_key or b"") == first_key
