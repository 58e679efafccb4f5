"""The browser-facing defences: security headers, CSRF tokens and the session cookies.

Headers (every response outside the JSON API under `/v1/` and the API docs): a strict
Content-Security-Policy (only this origin's own files; no inline script or style; no
framing), `nosniff`, a same-origin referrer, and HSTS when the public URL is https.

CSRF: a synchronizer token in every form, `HMAC-SHA256(web key, binding)`, where the
binding is `session:<digest of the session token>` once signed in, or
`visitor:<random nonce>` from a visitor cookie before (the sign-in and sign-up forms).
Checked on every POST with a constant-time compare. The key is 32 random bytes kept in
`<data dir>/keys/web-csrf.key` (mode 0600), so every `serve` process agrees.

Cookies: HttpOnly, SameSite=Lax, Path=/; when the public URL is https they are also
Secure and carry the `__Host-` prefix, which tells browsers to refuse them otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
CSRF_FIELD = "csrf_token"
_KEY_FILE = "web-csrf.key"


def security_headers(*, https: bool) -> list[tuple[bytes, bytes]]:
    headers = {
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=()",
    }
    if https:
        headers["strict-transport-security"] = "max-age=31536000"
    return [(name.encode(), value.encode()) for name, value in headers.items()]


class SecurityHeaders:
    """Add `headers` to every HTTP response whose path `exempt` does not claim; a header
    the response already set wins."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: list[tuple[bytes, bytes]],
        exempt: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.headers = headers
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- CSRF ----------------------------------------------------------------------------


def load_or_create_key(directory: Path, name: str = _KEY_FILE) -> bytes:
    """A 32-byte key kept in `directory/name` (the CSRF key by default), created once
    (O_EXCL: the first of several processes wins)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def csrf_token(key: bytes, binding: str) -> str:
    digest = hmac.new(key, binding.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def csrf_valid(key: bytes, binding: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(csrf_token(key, binding).encode(), given.encode())


def sign_value(key: bytes, purpose: str, value: str) -> str:
    """`value.mac`: `value` with an HMAC binding it to `purpose`, for short-lived cookies
    (the half-way state of a sign-in waiting for its code)."""
    return f"{value}.{csrf_token(key, f'{purpose}:{value}')}"


def unsign_value(key: bytes, purpose: str, signed: str | None) -> str | None:
    """The value of `sign_value`'s output, or None if it was not signed for `purpose`."""
    value, _, mac = (signed or "").rpartition(".")
    if not value or not csrf_valid(key, f"{purpose}:{value}", mac):
        return None
    return value


def session_binding(digest: str) -> str:
    return f"session:{digest}"


def visitor_binding(nonce: str) -> str:
    return f"visitor:{nonce}"


# --- cookies -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool

    @property
    def session_cookie(self) -> str:
        return self._name("doorstep_session")

    @property
    def visitor_cookie(self) -> str:
        return self._name("doorstep_visitor")

    @property
    def pending_cookie(self) -> str:
        """A sign-in whose password was right, waiting for the second factor."""
        return self._name("doorstep_pending")

    def _name(self, base: str) -> str:
        return f"__Host-{base}" if self.secure else base

    def set(self, response: Response, name: str, value: str, *, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="lax")
