"""The entry table and its states."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from doorstep.db import Base, UTCDateTime


class EntryState(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"  # the resident is asked; no grant yet
    AUTHORIZED = "authorized"
    UNLOCKED = "unlocked"
    OPENED = "opened"
    CLOSED = "closed"
    LOCKED = "locked"
    DONE = "done"
    DENIED = "denied"
    REFUSED = "refused"  # the hub refused the grant or the unlock
    ABORTED = "aborted"  # no delivery: never opened and relocked, or the courier called it off
    EXPIRED = "expired"  # no answer from the hub in time
    DECLINED = "declined"  # the resident declined, or did not answer in time


# The forward order of a successful entry; an event never moves an entry backwards.
PROGRESS = [
    EntryState.AWAITING_APPROVAL,
    EntryState.AUTHORIZED,
    EntryState.UNLOCKED,
    EntryState.OPENED,
    EntryState.CLOSED,
    EntryState.LOCKED,
    EntryState.DONE,
]
OPEN_STATES = (
    EntryState.AWAITING_APPROVAL,
    EntryState.AUTHORIZED,
    EntryState.UNLOCKED,
    EntryState.OPENED,
    EntryState.CLOSED,
    EntryState.LOCKED,
)
_OPEN_SQL = "state IN ('awaiting_approval', 'authorized', 'unlocked', 'opened', 'closed', 'locked')"


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        # At most one open entry per access point, enforced by the database itself.
        Index(
            "uq_entries_open_per_access_point",
            "access_point_id",
            unique=True,
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
        # What the sweep for entries whose hub never answered reads (migration 0002).
        Index(
            "ix_entries_authorized_expiry",
            "grant_expires_at",
            sqlite_where=text("state = 'authorized'"),
            postgresql_where=text("state = 'authorized'"),
        ),
        # Attempt limits count recent entries per courier and per home (migration 0004).
        Index("ix_entries_courier_created", "courier_id", "created_at"),
        Index("ix_entries_home_created", "home_id", "created_at"),
        # The lockout counts a courier's recent denials; the hold looks for an unresolved
        # failed relock. Both partial, so neither scans a courier's whole history (0008).
        Index(
            "ix_entries_courier_denied",
            "courier_id",
            "created_at",
            sqlite_where=text("state = 'denied'"),
            postgresql_where=text("state = 'denied'"),
        ),
        Index(
            "ix_entries_courier_relock_failed",
            "courier_id",
            sqlite_where=text("alert = 'relock_failed'"),
            postgresql_where=text("alert = 'relock_failed'"),
        ),
        Index(
            "ix_entries_approval_deadline",
            "approval_deadline",
            sqlite_where=text("state = 'awaiting_approval'"),
            postgresql_where=text("state = 'awaiting_approval'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_id: Mapped[str | None] = mapped_column(ForeignKey("deliveries.id"), index=True)
    package_id: Mapped[str | None] = mapped_column(ForeignKey("packages.id"))
    home_id: Mapped[str | None] = mapped_column(ForeignKey("homes.id"))
    access_point_id: Mapped[str | None] = mapped_column(ForeignKey("access_points.id"))
    hub_id: Mapped[str | None] = mapped_column(String(32))
    courier_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    token_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    command_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    grant_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approval_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the courier calls the entry off (pet, person, unsafe, other); migration 0005.
    abort_reason: Mapped[str | None] = mapped_column(String(32))
    # Proof of possession (migration 0006): the grant, kept to send again with the phone's
    # proof, and the hub's challenge (base64url) for the phone to sign.
    grant_token: Mapped[str | None] = mapped_column(Text)
    challenge: Mapped[str | None] = mapped_column(String(64))
    device_key_id: Mapped[str | None] = mapped_column(String(32))
    # The hub's latest alert for this entry (`protocol.messages.Alert`); migration 0007.
    alert: Mapped[str | None] = mapped_column(String(32))
    # Who came and how (migration 0009): a delivery, or a guest's or provider's visit on
    # an access grant, by the app or by a keypad code. `courier_id` is the person.
    purpose: Mapped[str] = mapped_column(String(16), default="delivery", server_default="delivery")
    grant_id: Mapped[str | None] = mapped_column(
        ForeignKey("access_grants.id", name="fk_entries_grant_id"), index=True
    )
    method: Mapped[str] = mapped_column(String(16), default="app", server_default="app")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    unlocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
