"""Browser sessions: a sign-in is an access token from `accounts.service.issue_token`, kept
in an HttpOnly cookie, so it expires like every token and is stored only as a digest.

Each browser session also has a `web_sessions` row (keyed by that digest): the browser's
user agent, when it was last seen (refreshed at most once a minute), and when the resident
last re-entered their password on it (`doorstep.web.reauth`). Only residents use this app
for now. "Sign out everywhere" deletes every token of the user, API bearer tokens
included; turning two-step sign-in on deletes all but this browser's
(`accounts.twofactor.turn_on`), and a password change all of them
(`accounts.passwords`; the page then starts a fresh session). The
sessions list shows the device, when each was issued, last seen and when it expires,
never the token or its digest: a row is named by an HMAC of its digest under the web
key, which is what "revoke" sends back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from doorstep.accounts.models import AccessToken, PrincipalKind, Role, User
from doorstep.accounts.service import (
    IssuedToken,
    Principal,
    authenticate_password,
    issue_token,
    resolve_token,
)
from doorstep.audit import service as audit
from doorstep.errors import Forbidden, NotAuthenticated, NotFound
from doorstep.permissions import PrincipalRole
from doorstep.security import token_digest
from doorstep.web.models import WebSession

LAST_SEEN_RESOLUTION = timedelta(minutes=1)
USER_AGENT_LIMIT = 300


class NotAResident(Forbidden):
    code = "not_a_resident"


@dataclass(frozen=True, slots=True)
class SignedIn:
    principal: Principal
    user: User
    digest: str  # of this browser's session token; the CSRF token is bound to it


@dataclass(frozen=True, slots=True)
class ActiveSession:
    handle: str
    device: str
    created_at: datetime
    last_seen_at: datetime | None
    expires_at: datetime
    current: bool


def check_password(session: Session, *, email: str, password: str, now: datetime) -> User:
    """The resident with this email and password. Wrong email and wrong password fail
    alike (same message, same argon2 work)."""
    user = authenticate_password(session, email=email, password=password, now=now)
    if user.role != Role.RESIDENT:
        raise NotAResident("this web app is for residents; couriers use the courier app")
    return user


def start(
    session: Session, *, user: User, user_agent: str, now: datetime, ttl: timedelta
) -> IssuedToken:
    """Issue a session token for `user` (whose password, and code, were checked)."""
    issued = issue_token(session, kind=PrincipalKind.USER, principal_id=user.id, now=now, ttl=ttl)
    forget_ended(session, user_id=user.id)
    session.add(
        WebSession(
            digest=token_digest(issued.access_token),
            user_id=user.id,
            user_agent=user_agent[:USER_AGENT_LIMIT],
            created_at=now,
            last_seen_at=now,
            reauth_at=None,
        )
    )
    return issued


def forget_ended(session: Session, *, user_id: str) -> None:
    """Delete the rows of this user's sessions whose tokens are gone (expired and purged,
    or ended elsewhere: `accounts.service.end_sessions`)."""
    session.execute(
        delete(WebSession).where(
            WebSession.user_id == user_id,
            WebSession.digest.not_in(select(AccessToken.digest)),
        )
    )


def sign_in(
    session: Session, *, email: str, password: str, now: datetime, ttl: timedelta
) -> IssuedToken:
    """Check the password and issue a session token (no second factor asked)."""
    user = check_password(session, email=email, password=password, now=now)
    return start(session, user=user, user_agent="", now=now, ttl=ttl)


def resolve(session: Session, *, token: str, now: datetime) -> SignedIn:
    principal = resolve_token(session, token=token, now=now)
    user = session.get(User, principal.id) if principal.kind == PrincipalKind.USER else None
    if user is None or principal.role != PrincipalRole.RESIDENT:
        raise NotAuthenticated("sign in as a resident")
    return SignedIn(principal, user, token_digest(token))


def touch(session: Session, *, user: SignedIn, now: datetime) -> None:
    """Note that this session was just used (at most one write a minute)."""
    row = session.get(WebSession, user.digest)
    if row is not None and now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        row.last_seen_at = now


def sign_out(session: Session, *, token: str) -> None:
    _end(session, token_digest(token))


def _end(session: Session, digest: str) -> None:
    session.execute(delete(WebSession).where(WebSession.digest == digest))
    session.execute(delete(AccessToken).where(AccessToken.digest == digest))


def sign_out_everywhere(session: Session, *, user: SignedIn, now: datetime) -> int:
    """Delete every token of the user (browser sessions and API bearer tokens); returns
    how many there were."""
    session.execute(delete(WebSession).where(WebSession.user_id == user.user.id))
    result = session.execute(
        delete(AccessToken).where(
            AccessToken.principal_kind == PrincipalKind.USER,
            AccessToken.principal_id == user.user.id,
        )
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    audit.append(
        session,
        at=now,
        actor=user.principal.actor,
        action="account:sessions:revoked",
        subject=user.user.id,
        data={"sessions": count},
    )
    return count


def handle_of(key: bytes, digest: str) -> str:
    """A session's name on the page: an HMAC of its digest, which reveals neither."""
    mac = hmac.new(key, f"session-handle:{digest}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode("ascii")


def _tokens(session: Session, user: SignedIn, now: datetime) -> list[AccessToken]:
    return list(
        session.scalars(
            select(AccessToken)
            .where(
                AccessToken.principal_kind == PrincipalKind.USER,
                AccessToken.principal_id == user.user.id,
                AccessToken.expires_at > now,
            )
            .order_by(AccessToken.created_at.desc())
        )
    )


def active_sessions(
    session: Session, *, user: SignedIn, now: datetime, key: bytes
) -> list[ActiveSession]:
    tokens = _tokens(session, user, now)
    rows = {
        row.digest: row
        for row in session.scalars(
            select(WebSession).where(WebSession.digest.in_([t.digest for t in tokens]))
        )
    }
    found = []
    for token in tokens:
        row = rows.get(token.digest)
        found.append(
            ActiveSession(
                handle=handle_of(key, token.digest),
                device=device_name(row.user_agent) if row else "API token or older session",
                created_at=token.created_at,
                last_seen_at=row.last_seen_at if row else None,
                expires_at=token.expires_at,
                current=token.digest == user.digest,
            )
        )
    return found


def revoke(session: Session, *, user: SignedIn, handle: str, now: datetime, key: bytes) -> bool:
    """End the user's session named `handle`; True when it was this browser's own."""
    for token in _tokens(session, user, now):
        if hmac.compare_digest(handle_of(key, token.digest), handle):
            _end(session, token.digest)
            audit.append(
                session,
                at=now,
                actor=user.principal.actor,
                action="account:session:revoked",
                subject=user.user.id,
                data={"current": token.digest == user.digest},
            )
            return token.digest == user.digest
    raise NotFound("no such session; it may have ended already")


def mark_reauthenticated(session: Session, *, user: SignedIn, now: datetime) -> None:
    row = session.get(WebSession, user.digest)
    if row is None:  # a session from before web_sessions existed
        row = WebSession(
            digest=user.digest,
            user_id=user.user.id,
            user_agent="",
            created_at=now,
            last_seen_at=now,
        )
        session.add(row)
    row.reauth_at = now


def reauthenticated_at(session: Session, *, user: SignedIn) -> datetime | None:
    row = session.get(WebSession, user.digest)
    return row.reauth_at if row is not None else None


_BROWSERS = (
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str) -> str:
    """`Chrome on Android`, from the user agent; "Unknown browser" when it says nothing."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown browser"
