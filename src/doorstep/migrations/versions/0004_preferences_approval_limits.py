"""delivery preferences, closures, approval, attempt limits

Homes get weekday, approval and note preferences; `home_closures` holds vacation,
blackout and "not today" days. Entries get an approval deadline and the
`awaiting_approval` state, which counts as open, so the one-open-entry index is rebuilt.
Attempt limits count recent entries per courier and per home: composite indexes replace
the single-column ones they cover.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import doorstep.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OPEN_BEFORE = sa.text("state IN ('authorized', 'unlocked', 'opened', 'closed', 'locked')")
_OPEN_AFTER = sa.text(
    "state IN ('awaiting_approval', 'authorized', 'unlocked', 'opened', 'closed', 'locked')"
)
_AWAITING = sa.text("state = 'awaiting_approval'")


def upgrade() -> None:
    with op.batch_alter_table("homes") as batch:
        batch.add_column(
            sa.Column("allowed_weekdays", sa.Integer(), nullable=False, server_default="127")
        )
        batch.add_column(
            sa.Column("approval_mode", sa.String(16), nullable=False, server_default="auto")
        )
        batch.add_column(
            sa.Column(
                "approval_timeout_seconds", sa.Integer(), nullable=False, server_default="120"
            )
        )
        batch.add_column(sa.Column("pet_notes", sa.String(500), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("placement_notes", sa.String(500), nullable=False, server_default="")
        )
    op.create_table(
        "home_closures",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("home_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("created_at", doorstep.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["home_id"], ["homes.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_home_closures_home_id", "home_closures", ["home_id"])
    with op.batch_alter_table("entries") as batch:
        # 'awaiting_approval' is longer than the 16 characters the column had.
        batch.alter_column(
            "state", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False
        )
        batch.add_column(
            sa.Column("approval_deadline", doorstep.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.drop_index("uq_entries_open_per_access_point", table_name="entries")
    op.create_index(
        "uq_entries_open_per_access_point",
        "entries",
        ["access_point_id"],
        unique=True,
        sqlite_where=_OPEN_AFTER,
        postgresql_where=_OPEN_AFTER,
    )
    op.create_index(
        "ix_entries_approval_deadline",
        "entries",
        ["approval_deadline"],
        sqlite_where=_AWAITING,
        postgresql_where=_AWAITING,
    )
    op.create_index("ix_entries_courier_created", "entries", ["courier_id", "created_at"])
    op.create_index("ix_entries_home_created", "entries", ["home_id", "created_at"])
    op.drop_index("ix_entries_courier_id", table_name="entries")
    op.drop_index("ix_entries_home_id", table_name="entries")


def downgrade() -> None:
    op.create_index("ix_entries_home_id", "entries", ["home_id"])
    op.create_index("ix_entries_courier_id", "entries", ["courier_id"])
    op.drop_index("ix_entries_home_created", table_name="entries")
    op.drop_index("ix_entries_courier_created", table_name="entries")
    op.drop_index("ix_entries_approval_deadline", table_name="entries")
    op.drop_index("uq_entries_open_per_access_point", table_name="entries")
    op.create_index(
        "uq_entries_open_per_access_point",
        "entries",
        ["access_point_id"],
        unique=True,
        sqlite_where=_OPEN_BEFORE,
        postgresql_where=_OPEN_BEFORE,
    )
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("approval_deadline")
        batch.alter_column(
            "state", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False
        )
    op.drop_index("ix_home_closures_home_id", table_name="home_closures")
    op.drop_table("home_closures")
    with op.batch_alter_table("homes") as batch:
        for column in (
            "placement_notes",
            "pet_notes",
            "approval_timeout_seconds",
            "approval_mode",
            "allowed_weekdays",
        ):
            batch.drop_column(column)
