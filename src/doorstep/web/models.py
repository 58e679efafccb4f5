"""Tables of the resident's web app (migration 0011): what a browser session knows beyond
its access token, the second factor (TOTP and its recovery codes), and which emails a
resident wants.

A web session row is keyed by the digest of its access token (`access_tokens.digest`),
never the token. It is deleted with the token, or, when the token was ended outside this
app (a password changed through `POST /v1/me/password`), at the user's next sign-in; a
token without a row (an API bearer token, or a session from before 0011) is listed as
"API token or older session".
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime


class WebSession(Base):
    __tablename__ = "web_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the resident re-entered their password (and code) on this session; the
    # sensitive actions ask for it to be recent (`doorstep.web.reauth`).
    reauth_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NotificationChoice(Base):
    """Which optional emails a resident gets. Alerts are always sent and have no switch.
    No row: every email (the default)."""

    __tablename__ = "notification_choices"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    entry_started: Mapped[bool] = mapped_column(Boolean, default=True)
    entry_ended: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
