"""hub events whose effects failed, kept to be applied again

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import doorstep.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_event_failures",
        sa.Column("hub_id", sa.String(length=32), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", doorstep.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["hub_id", "epoch", "seq"],
            ["hub_events.hub_id", "hub_events.epoch", "hub_events.seq"],
        ),
        sa.PrimaryKeyConstraint("hub_id", "epoch", "seq"),
    )
    op.create_index("ix_hub_event_failures_next_at", "hub_event_failures", ["next_at"])


def downgrade() -> None:
    op.drop_index("ix_hub_event_failures_next_at", table_name="hub_event_failures")
    op.drop_table("hub_event_failures")
