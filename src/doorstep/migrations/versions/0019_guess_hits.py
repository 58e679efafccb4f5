"""guess_hits: the guess limiters' counts, shared by every service process

Sign-in, claim, invitation, provider and reset-code attempts were counted in each
process's memory: N processes allowed N times the limit, and a restart forgot them all
(`doorstep.ratelimit`). Rows live about a window (a minute); the key is an HMAC.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guess_hits",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("leaves_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "leaves_at"),
    )
    op.create_index("ix_guess_hits_leaves_at", "guess_hits", ["leaves_at"])


def downgrade() -> None:
    op.drop_index("ix_guess_hits_leaves_at", table_name="guess_hits")
    op.drop_table("guess_hits")
