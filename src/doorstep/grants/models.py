"""Access grants (one model for every guest and provider visit), invitations, provider
organisations and their people, and each hub's shadow document."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime


class Purpose(StrEnum):
    DELIVERY = "delivery"  # a carrier's courier (deliveries, not grants)
    GUEST = "guest"
    SERVICE = "service"  # a provider's appointment


class Method(StrEnum):
    APP = "app"  # the phone signs the hub's challenge (proof of possession)
    KEYPAD = "keypad"  # a PIN the hub programs on the lock


class MemberRole(StrEnum):
    ADMIN = "admin"
    WORKER = "worker"


class AccessGrant(Base):
    """Who may come in, where, when and how: a guest's pass or a provider's appointment.

    Mirrors a Matter lock user: the grantee (a user), one access point, a schedule
    (`doorstep.grants.schedule`), a credential (the app's key, or a PIN) and a use limit.
    An appointment is a `service` grant of its provider, for one window; its grantee is
    the worker the provider assigns (none until then)."""

    __tablename__ = "access_grants"
    __table_args__ = (
        Index("ix_access_grants_home", "home_id", "created_at"),
        Index("ix_access_grants_grantee", "grantee_id"),
        Index("ix_access_grants_provider", "provider_id"),
        Index("ix_access_grants_access_point", "access_point_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"))
    access_point_id: Mapped[str] = mapped_column(ForeignKey("access_points.id"))
    purpose: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(100))
    grantee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("providers.id"))
    kind: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    windows: Mapped[str] = mapped_column(Text, default="[]")  # JSON: schedule.WeeklyWindow
    uses_limit: Mapped[int | None] = mapped_column(Integer)
    require_geofence: Mapped[bool] = mapped_column(Boolean, default=False)
    # A keypad code: an argon2 hash (never the code), and the code sealed to the hub's
    # key (`protocol.seal`), which only that hub can open.
    pin_digest: Mapped[str | None] = mapped_column(String(200))
    pin_sealed: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    # The hub shadow version that no longer holds this grant: enforced at the hub once
    # the hub reports that version.
    revoked_version: Mapped[int | None] = mapped_column(Integer)


class Invitation(Base):
    """A link mailed to a guest (for a grant) or a worker (for a provider). The account
    exists from the start, without a password; accepting sets it, once."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("access_grants.id"))
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("providers.id"))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Provider(Base):
    """A service provider organisation (a cleaning company, a dog walker)."""

    __tablename__ = "providers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProviderMember(Base):
    __tablename__ = "provider_members"

    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProviderBlock(Base):
    """A resident's "never again" for a provider at one home."""

    __tablename__ = "provider_blocks"

    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HubShadow(Base):
    """The version of each hub's desired document (credentials, revoked tokens) and the
    version the hub last reported as applied."""

    __tablename__ = "hub_shadows"

    hub_id: Mapped[str] = mapped_column(ForeignKey("hubs.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_version: Mapped[int] = mapped_column(Integer, default=0)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported: Mapped[str] = mapped_column(Text, default="{}")  # credential id -> state
