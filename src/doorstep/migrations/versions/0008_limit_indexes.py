"""partial indexes for the courier lockout and the failed-relock hold

Without them, both checks scan a courier's entries: every request of a busy courier
would pay for the whole history.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_DENIED = sa.text("state = 'denied'")
_RELOCK_FAILED = sa.text("alert = 'relock_failed'")


def upgrade() -> None:
    op.create_index(
        "ix_entries_courier_denied",
        "entries",
        ["courier_id", "created_at"],
        sqlite_where=_DENIED,
        postgresql_where=_DENIED,
    )
    op.create_index(
        "ix_entries_courier_relock_failed",
        "entries",
        ["courier_id"],
        sqlite_where=_RELOCK_FAILED,
        postgresql_where=_RELOCK_FAILED,
    )


def downgrade() -> None:
    op.drop_index("ix_entries_courier_relock_failed", table_name="entries")
    op.drop_index("ix_entries_courier_denied", table_name="entries")
