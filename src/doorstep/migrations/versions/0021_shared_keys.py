"""shared_keys: the fingerprint of the keys every `serve` of the database must share

Two `serve` processes with keys of their own (each its own data dir) could not read
each other's sealed two-step secrets, nor check each other's forms; `serve` now records
the keys' fingerprint on its first start and refuses to start with others
(`doorstep.keycheck`).

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shared_keys",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("shared_keys")
