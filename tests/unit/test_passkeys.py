"""Passkeys on the server side (`accounts.passkeys`), answered by a software
authenticator with a real ES256 key (`tests/passkey_device.py`), on SQLite and
PostgreSQL: a passkey added and signed in with, and every refusal a relying party owes
(another origin, another RP ID, no user verification, a replayed, expired or foreign
challenge, a sign count going back, another resident's passkey)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from doorstep import db, security
from doorstep.accounts import passkeys, passwords
from doorstep.accounts.models import Passkey, PasskeyChallenge, PasswordReset, Role, User
from doorstep.accounts.passkeys import CounterWentBack, PasskeyRefused, RelyingParty
from doorstep.accounts.service import create_user
from doorstep.audit.models import AuditEvent
from doorstep.errors import NotFound
from doorstep.notify.models import OutboxMessage
from doorstep.settings import Settings
from passkey_device import Authenticator, b64url, unb64url

ORIGIN = "https://doorstep.example.com"
RP = RelyingParty(id="doorstep.example.com", origin=ORIGIN)
NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
BROWSER = "digest-of-this-browser-session"


@pytest.fixture
def session(migrated_engine: Engine) -> Iterator[Session]:
    with db.make_session_factory(migrated_engine)() as session:
        yield session


def _resident(session: Session, email: str = "ada@doorstep.test") -> User:
    user = create_user(session, email=email, name="Ada", password="correct horse battery",
                       role=Role.RESIDENT, now=NOW)  # fmt: skip
    session.flush()
    return user


def _device() -> Authenticator:
    return Authenticator(origin=ORIGIN, rp_id=RP.id)


def _add(session: Session, user: User, device: Authenticator, **answer: object) -> Passkey:
    options = passkeys.registration_options(session, rp=RP, user=user, browser=BROWSER, now=NOW)
    return passkeys.register(
        session, rp=RP, user=user, actor=f"resident:{user.id}", browser=BROWSER,
        response=device.create(options, **answer), name="Phone", now=NOW,
    )  # fmt: skip


def _sign_in(
    session: Session, device: Authenticator, *, at: datetime = NOW, browser: str = "visitor-1",
    **answer: object,
) -> User:  # fmt: skip
    options = passkeys.sign_in_options(session, rp=RP, browser=browser, now=at)
    response = device.get(options, **answer)
    return passkeys.sign_in(session, rp=RP, browser=browser, response=response, now=at)


def test_a_passkey_is_added_and_signs_its_resident_in(session: Session) -> None:
    user, device = _resident(session), _device()
    options = json.loads(
        passkeys.registration_options(session, rp=RP, user=user, browser=BROWSER, now=NOW)
    )
    assert options["rp"] == {"id": RP.id, "name": "Doorstep"}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    passkey = _add(session, user, device)
    assert passkey.user_id == user.id
    assert passkey.sign_count == 1
    assert passkey.transports == "internal"
    assert passkey.last_used_at is None

    later = NOW + timedelta(hours=1)
    assert _sign_in(session, device, at=later).id == user.id
    stored = session.get(Passkey, passkey.id)
    assert stored is not None
    assert stored.sign_count == 2
    assert stored.last_used_at == later

    # Audited by name, never with the public key; no challenge is left behind.
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "account:passkey:added")
    ).one()
    assert event.subject == user.id
    assert event.data == {"name": "Phone"}
    assert passkey.public_key.hex() not in orjson.dumps(event.data).decode()
    assert session.scalars(select(PasskeyChallenge)).all() == []


def test_the_second_add_does_not_offer_the_first_passkey_again(session: Session) -> None:
    user, device = _resident(session), _device()
    _add(session, user, device)
    options = json.loads(
        passkeys.registration_options(session, rp=RP, user=user, browser=BROWSER, now=NOW)
    )
    excluded = [unb64url(item["id"]) for item in options["excludeCredentials"]]
    assert excluded == [device.credential_id]
    with pytest.raises(PasskeyRefused, match="already registered"):
        passkeys.register(
            session, rp=RP, user=user, actor="resident:x", browser=BROWSER,
            response=device.create(options), name="Again", now=NOW,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        ({"origin": "https://doorstep.example.com.evil.test"}, "origin"),
        ({"rp_id": "evil.test"}, "RP ID hash"),
        ({"verified": False}, "not verified"),
    ],
    ids=["other-origin", "other-rp-id", "no-user-verification"],
)
def test_adding_refuses_an_answer_not_for_this_site_or_unverified(
    session: Session, answer: dict[str, object], cause: str
) -> None:
    user = _resident(session)
    with pytest.raises(PasskeyRefused) as refused:
        _add(session, user, _device(), **answer)
    assert cause in str(refused.value.__cause__)
    assert passkeys.listed(session, user_id=user.id) == []


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        ({"origin": "http://doorstep.example.com"}, "origin"),
        ({"rp_id": "example.com"}, "RP ID hash"),
        ({"verified": False}, "not verified"),
    ],
    ids=["other-origin", "other-rp-id", "no-user-verification"],
)
def test_signing_in_refuses_an_answer_not_for_this_site_or_unverified(
    session: Session, answer: dict[str, object], cause: str
) -> None:
    user, device = _resident(session), _device()
    _add(session, user, device)
    with pytest.raises(PasskeyRefused) as refused:
        _sign_in(session, device, **answer)
    assert cause in str(refused.value.__cause__)
    assert refused.value.user_id == user.id  # recorded against the account it named
    assert not isinstance(refused.value, CounterWentBack)


def test_a_challenge_is_good_once_for_its_browser_and_for_minutes(session: Session) -> None:
    user, device = _resident(session), _device()
    _add(session, user, device)

    options = passkeys.sign_in_options(session, rp=RP, browser="visitor-1", now=NOW)
    response = device.get(options)
    assert passkeys.sign_in(session, rp=RP, browser="visitor-1", response=response, now=NOW)
    with pytest.raises(PasskeyRefused, match="already used"):  # the same answer again
        passkeys.sign_in(session, rp=RP, browser="visitor-1", response=response, now=NOW)

    # Handed to one browser, answered from another: refused (that one asked for nothing).
    options = passkeys.sign_in_options(session, rp=RP, browser="visitor-1", now=NOW)
    with pytest.raises(PasskeyRefused):
        passkeys.sign_in(session, rp=RP, browser="visitor-2", response=device.get(options),
                         now=NOW)  # fmt: skip
    # ... and an answer to another browser's challenge does not match this one's.
    passkeys.sign_in_options(session, rp=RP, browser="visitor-2", now=NOW)
    with pytest.raises(PasskeyRefused, match="another request"):
        passkeys.sign_in(session, rp=RP, browser="visitor-2", response=device.get(options),
                         now=NOW)  # fmt: skip

    # Answered too late.
    options = passkeys.sign_in_options(session, rp=RP, browser="visitor-3", now=NOW)
    late = NOW + timedelta(seconds=passkeys.CHALLENGE_SECONDS)
    with pytest.raises(PasskeyRefused, match="expired"):
        passkeys.sign_in(session, rp=RP, browser="visitor-3", response=device.get(options),
                         now=late)  # fmt: skip


def test_a_registration_answer_replayed_is_refused(session: Session) -> None:
    user, device = _resident(session), _device()
    options = passkeys.registration_options(session, rp=RP, user=user, browser=BROWSER, now=NOW)
    response = device.create(options)
    passkeys.register(session, rp=RP, user=user, actor="resident:x", browser=BROWSER,
                      response=response, name="Phone", now=NOW)  # fmt: skip
    passkeys.remove(session, user_id=user.id, passkey_id=b64url(device.credential_id),
                    actor="resident:x", now=NOW)  # fmt: skip
    with pytest.raises(PasskeyRefused, match="already used"):
        passkeys.register(session, rp=RP, user=user, actor="resident:x", browser=BROWSER,
                          response=response, name="Phone", now=NOW)  # fmt: skip


def test_a_sign_count_that_goes_back_is_refused(session: Session) -> None:
    user, device = _resident(session), _device()
    _add(session, user, device)
    device.sign_count = 7
    _sign_in(session, device)  # 8
    device.sign_count = 3  # a copy of the key, used elsewhere less often
    with pytest.raises(CounterWentBack) as refused:
        _sign_in(session, device)
    assert refused.value.user_id == user.id
    stored = session.scalars(select(Passkey)).one()
    assert stored.sign_count == 8
    device.sign_count = 7  # the same count again is no better
    with pytest.raises(CounterWentBack):
        _sign_in(session, device)


def test_an_authenticator_without_a_counter_signs_in_again_and_again(session: Session) -> None:
    user, device = _resident(session), Authenticator(ORIGIN, RP.id, counting=False)
    _add(session, user, device)
    for _ in range(3):
        assert _sign_in(session, device).id == user.id


def test_unknown_passkeys_and_other_accounts_handles_are_refused(session: Session) -> None:
    user, other = _resident(session), _resident(session, "bea@doorstep.test")
    device = _device()
    _add(session, user, device)
    with pytest.raises(PasskeyRefused, match="not registered") as refused:
        _sign_in(session, _device())
    assert refused.value.user_id is None
    with pytest.raises(PasskeyRefused, match="another account"):
        _sign_in(session, device, user_handle=other.id.encode())


def test_an_inactive_account_cannot_sign_in_with_its_passkey(session: Session) -> None:
    user, device = _resident(session), _device()
    _add(session, user, device)
    user.active = False
    with pytest.raises(PasskeyRefused):
        _sign_in(session, device)


def test_a_resident_cannot_remove_anothers_passkey(session: Session) -> None:
    ada, bea = _resident(session), _resident(session, "bea@doorstep.test")
    passkey = _add(session, ada, _device())
    with pytest.raises(NotFound):
        passkeys.remove(session, user_id=bea.id, passkey_id=passkey.id, actor="resident:b",
                        now=NOW)  # fmt: skip
    assert [key.id for key in passkeys.listed(session, user_id=ada.id)] == [passkey.id]
    passkeys.remove(session, user_id=ada.id, passkey_id=passkey.id, actor="resident:a", now=NOW)
    assert passkeys.listed(session, user_id=ada.id) == []
    removed = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "account:passkey:removed")
    ).one()
    assert (removed.subject, removed.data) == (ada.id, {"name": "Phone"})


def test_the_relying_party_comes_from_the_public_url() -> None:
    def rp(**given: str) -> RelyingParty | None:
        return RelyingParty.of(Settings(**given))  # type: ignore[arg-type]

    assert rp(public_url="https://doorstep.example.com/") == RP
    assert rp(public_url="https://Doorstep.Example.com:443/app") == RP  # as browsers say it
    assert rp(public_url="http://localhost:8000") == RelyingParty(
        "localhost", "http://localhost:8000"
    )
    sub = rp(public_url="https://doorstep.example.com", passkey_rp_id="example.com")
    assert sub == RelyingParty("example.com", ORIGIN)
    assert rp() is None  # http://127.0.0.1:8000: an IP address is no RP ID
    assert rp(public_url="https://[2001:db8::1]") is None
    for wrong in ("other.example", "ample.com", "127.0.0.1", "Example.com"):
        with pytest.raises(ValueError, match="passkey_rp_id"):
            Settings(public_url="https://doorstep.example.com", passkey_rp_id=wrong)


def test_the_owner_is_emailed_of_every_passkey_added(session: Session) -> None:
    """Someone with the account for a moment (a session left open) could add a passkey
    and keep it: the owner hears of it at once."""
    user = _resident(session)
    _add(session, user, _device())
    [mail] = session.scalars(
        select(OutboxMessage).where(OutboxMessage.event_type == "account.passkey_added")
    ).all()
    assert mail.target == user.email
    assert "Phone" in mail.payload["text"]
    assert "Forgot your password?" in mail.payload["text"]


def test_a_password_reset_removes_every_passkey_of_the_account(session: Session) -> None:
    """A reset by emailed link is how an owner takes the account back: a passkey someone
    else added must not outlive it."""
    user, device = _resident(session), _device()
    _add(session, user, device)
    token = security.new_token()
    session.add(PasswordReset(digest=security.token_digest(token), user_id=user.id,
                              expires_at=NOW + timedelta(minutes=30), created_at=NOW))  # fmt: skip
    session.flush()

    passwords.complete_reset(session, token=token, password="a new long passphrase",
                             code=None, now=NOW, key=bytes(32), client="203.0.113.9")  # fmt: skip

    assert passkeys.listed(session, user_id=user.id) == []
    removed = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "account:passkey:removed")
    ).one()
    assert (removed.subject, removed.data) == (user.id, {"name": "Phone", "why": "password_reset"})
    with pytest.raises(PasskeyRefused):
        _sign_in(session, device, at=NOW + timedelta(minutes=1))
