"""index entries waiting for their hub by grant expiry

The sweep that expires entries whose hub never answered runs every few seconds; without
this partial index it scans every entry ever made.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHERE = sa.text("state = 'authorized'")


def upgrade() -> None:
    op.create_index(
        "ix_entries_authorized_expiry",
        "entries",
        ["grant_expires_at"],
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_entries_authorized_expiry", table_name="entries")
