"""Passkeys (WebAuthn, checked with py_webauthn) for residents: add one while signed in,
sign in with one, list and remove them.

Adding (`registration_options`, then `register`): a discoverable credential (resident key
required), user verification required, attestation "none" (the resident is signed in
and has just re-entered their password; which make of authenticator holds the key is
not Doorstep's business). Signing in (`sign_in_options`, then `sign_in`) needs no
username: the authenticator offers the passkeys it holds for this relying party and
answers with the chosen one's ID. A signature with the user-verified flag proves the
device and its screen lock (or fingerprint) at once, so it stands for the password and
the two-step code together.

Challenges: 32 random bytes, one per browser and purpose (a browser session's adding, a
visitor cookie's sign-in), stored for `CHALLENGE_SECONDS` as a `PasskeyChallenge` keyed
by a hash of that binding, taken (deleted) by the answer whether it verifies or not, and
compared in constant time. A response for another origin than the public URL's, or
another RP ID hash, is refused.

Sign counters: an authenticator that keeps one must answer with a greater count each
time (unless both the stored and the new count are 0: it keeps none). A count that does
not grow may be a cloned key: the sign-in is refused (`CounterWentBack`) and the caller
records it. Neither a public key nor a challenge is ever logged or audited.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from doorstep.accounts.models import Passkey, PasskeyChallenge, Role, User
from doorstep.audit import service as audit
from doorstep.db import new_id
from doorstep.errors import InvalidRequest, NotFound
from doorstep.notify import outbox
from doorstep.settings import Settings
from doorstep.sql import Tx

CHALLENGE_SECONDS = 300
TIMEOUT_MS = 120_000  # how long the browser waits for the authenticator (a hint)
NAME_LIMIT = 60
RP_NAME = "Doorstep"
_UNREADABLE = (WebAuthnException, ValueError, TypeError, KeyError)


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who the passkeys are for: `id` (a domain) and the one origin responses may name."""

    id: str
    origin: str

    @classmethod
    def of(cls, settings: Settings) -> RelyingParty | None:
        """From the settings; None when passkeys are off (the public URL is an IP)."""
        rp_id = settings.resolved_passkey_rp_id
        return cls(rp_id, settings.public_origin) if rp_id else None


class PasskeyRefused(InvalidRequest):
    """A passkey response that does not verify; `user_id` is the account whose passkey it
    named, when it named one."""

    code = "passkey_refused"

    def __init__(self, message: str, *, user_id: str | None = None) -> None:
        super().__init__(message)
        self.user_id = user_id


class CounterWentBack(PasskeyRefused):
    """A valid signature whose sign count did not grow: possibly a cloned key."""

    code = "passkey_counter"


def _binding(purpose: str, browser: str) -> str:
    return hashlib.sha256(f"passkey:{purpose}:{browser}".encode()).hexdigest()


def _issue(session: Session, *, purpose: str, browser: str, now: datetime) -> bytes:
    """A fresh challenge for this browser and purpose (replacing an unanswered one);
    expired ones of every browser go."""
    session.execute(delete(PasskeyChallenge).where(PasskeyChallenge.expires_at <= now))
    binding = _binding(purpose, browser)
    session.execute(delete(PasskeyChallenge).where(PasskeyChallenge.binding == binding))
    challenge = secrets.token_bytes(32)
    expires_at = now + timedelta(seconds=CHALLENGE_SECONDS)
    session.add(PasskeyChallenge(binding=binding, challenge=challenge, expires_at=expires_at))
    session.flush()
    return challenge


def _take(session: Session, *, purpose: str, browser: str, now: datetime) -> bytes:
    """The browser's challenge, deleted in the same statement (so it is good once, also
    against two answers at the same time); refused when missing or expired."""
    row = session.execute(
        delete(PasskeyChallenge)
        .where(PasskeyChallenge.binding == _binding(purpose, browser))
        .returning(PasskeyChallenge.challenge, PasskeyChallenge.expires_at)
    ).first()
    if row is None or row.expires_at <= now:
        raise PasskeyRefused("the passkey request has expired or was already used: start again")
    return bytes(row.challenge)


def _check_challenge(expected: bytes, client_data_json: bytes) -> None:
    """Compare the challenge the browser signed with the one handed out, in constant time
    (py_webauthn compares with `!=`; it then only ever sees equal ones)."""
    signed = parse_client_data_json(client_data_json).challenge
    if not hmac.compare_digest(signed, expected):
        raise PasskeyRefused("the passkey answered another request: start again")


def registration_options(
    session: Session, *, rp: RelyingParty, user: User, browser: str, now: datetime
) -> str:
    """Options for `navigator.credentials.create`, as JSON (binary fields base64url);
    `browser` is the digest of the browser session the answer must come from."""
    challenge = _issue(session, purpose="register", browser=browser, now=now)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=RP_NAME,
        user_id=user.id.encode(),
        user_name=user.email,
        user_display_name=user.name,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(key.id))
            for key in listed(session, user_id=user.id)
        ],
    )
    return options_to_json(options)


def valid_name(name: str) -> str:
    """The passkey's name as the resident typed it, trimmed; refused when empty or long."""
    name = " ".join(name.split())
    if not name or len(name) > NAME_LIMIT:
        raise InvalidRequest(f"give the passkey a name of 1 to {NAME_LIMIT} characters")
    return name


def register(
    session: Session,
    *,
    rp: RelyingParty,
    user: User,
    actor: str,
    browser: str,
    response: str,
    name: str,
    now: datetime,
) -> Passkey:
    """Verify the browser's answer to `registration_options` and keep the new passkey."""
    name = valid_name(name)
    expected = _take(session, purpose="register", browser=browser, now=now)
    try:
        credential: RegistrationCredential = parse_registration_credential_json(response)
        _check_challenge(expected, credential.response.client_data_json)
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=expected,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except _UNREADABLE as exc:
        raise PasskeyRefused("the passkey could not be verified") from exc
    passkey_id = bytes_to_base64url(verified.credential_id)
    if session.get(Passkey, passkey_id) is not None:
        raise PasskeyRefused("this passkey is already registered")
    transports = ",".join(_transports(credential.response.transports))
    passkey = Passkey(id=passkey_id, user_id=user.id, public_key=verified.credential_public_key,
                      sign_count=verified.sign_count, name=name, transports=transports,
                      created_at=now, last_used_at=None)  # fmt: skip
    session.add(passkey)
    session.flush()
    audit.append(session, at=now, actor=actor, action="account:passkey:added", subject=user.id,
                 data={"name": name})  # fmt: skip
    # Whoever took the account over for a moment could add a passkey and keep it: the
    # owner hears of every one, and a password reset removes them all (`remove_all`).
    outbox.queue_mail(Tx.of_session(session), event_id=new_id(f"{user.id}.passkey"),
                      event_type="account.passkey_added", to=user.email,
                      message=_added_mail(name), at=now)  # fmt: skip
    return passkey


def _added_mail(name: str) -> dict[str, str]:
    return {
        "subject": "A passkey was added to your Doorstep account",
        "text": f'A passkey named "{name}" was just added to your Doorstep account: it signs '
        "in without your password or code. If this was you, there is nothing to do. If it "
        'was not, choose a new password now with "Forgot your password?" on the sign-in '
        "page: that removes every passkey of the account and signs it out everywhere.",
    }


def remove_all(session: Session, *, user_id: str, actor: str, why: str, now: datetime) -> int:
    """Delete every passkey of the account (a password reset: the account may have been
    someone else's for a while), each on the audit log; how many there were."""
    passkeys = listed(session, user_id=user_id)
    for passkey in passkeys:
        session.delete(passkey)
        audit.append(session, at=now, actor=actor, action="account:passkey:removed",
                     subject=user_id, data={"name": passkey.name, "why": why})  # fmt: skip
    return len(passkeys)


def _transports(given: list[AuthenticatorTransport] | None) -> list[str]:
    return sorted({str(transport.value) for transport in given or []})[:8]


def sign_in_options(session: Session, *, rp: RelyingParty, browser: str, now: datetime) -> str:
    """Options for `navigator.credentials.get`, as JSON: no allowed list (the passkey is
    discoverable), user verification required. `browser` is the visitor cookie's nonce."""
    challenge = _issue(session, purpose="sign-in", browser=browser, now=now)
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options)


def sign_in(
    session: Session, *, rp: RelyingParty, browser: str, response: str, now: datetime
) -> User:
    """The resident whose passkey signed the browser's answer to `sign_in_options`."""
    expected = _take(session, purpose="sign-in", browser=browser, now=now)
    try:
        credential: AuthenticationCredential = parse_authentication_credential_json(response)
    except _UNREADABLE as exc:
        raise PasskeyRefused("the passkey answer could not be read") from exc
    passkey = session.get(Passkey, credential.id)
    user = session.get(User, passkey.user_id) if passkey is not None else None
    if passkey is None or user is None:
        raise PasskeyRefused("this passkey is not registered here")
    _verify_assertion(rp, credential, expected, passkey, user)
    if not user.active or user.role != Role.RESIDENT:
        raise PasskeyRefused("this account cannot sign in here", user_id=user.id)
    passkey.last_used_at = now
    return user


def _verify_assertion(
    rp: RelyingParty,
    credential: AuthenticationCredential,
    expected: bytes,
    passkey: Passkey,
    user: User,
) -> None:
    handle = credential.response.user_handle
    try:
        if handle is not None and not hmac.compare_digest(handle, user.id.encode()):
            raise PasskeyRefused("the passkey names another account", user_id=user.id)
        _check_challenge(expected, credential.response.client_data_json)
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=expected,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=0,  # compared below, to tell a clone apart
            require_user_verification=True,
        )
    except PasskeyRefused as exc:
        exc.user_id = user.id
        raise
    except _UNREADABLE as exc:
        raise PasskeyRefused("the passkey could not be verified", user_id=user.id) from exc
    new, stored = verified.new_sign_count, passkey.sign_count
    if (new or stored) and new <= stored:
        raise CounterWentBack("the passkey's sign count went back", user_id=user.id)
    passkey.sign_count = new


def listed(session: Session, *, user_id: str) -> list[Passkey]:
    """The resident's passkeys, oldest first."""
    return list(
        session.scalars(
            select(Passkey)
            .where(Passkey.user_id == user_id)
            .order_by(Passkey.created_at, Passkey.id)
        )
    )


def remove(session: Session, *, user_id: str, passkey_id: str, actor: str, now: datetime) -> None:
    """Delete the resident's passkey `passkey_id`; another resident's is "not found"."""
    passkey = session.get(Passkey, passkey_id)
    if passkey is None or passkey.user_id != user_id:
        raise NotFound("no such passkey; it may have been removed already")
    session.delete(passkey)
    audit.append(session, at=now, actor=actor, action="account:passkey:removed",
                 subject=user_id, data={"name": passkey.name})  # fmt: skip
