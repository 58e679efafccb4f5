"""booking_keys: carriers' Idempotency-Keys on bookings, kept for a day

A carrier that sends a booking again with the same `Idempotency-Key` (after a timeout on
its side) is answered with the delivery the first request booked (`deliveries.service`).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import doorstep.db

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "booking_keys",
        sa.Column("carrier_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request", sa.String(length=64), nullable=False),
        sa.Column("delivery_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", doorstep.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["carrier_id"], ["carriers.id"]),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"]),
        sa.PrimaryKeyConstraint("carrier_id", "key"),
    )
    op.create_index("ix_booking_keys_carrier_created", "booking_keys", ["carrier_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_booking_keys_carrier_created", table_name="booking_keys")
    op.drop_table("booking_keys")
