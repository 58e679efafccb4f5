"""proof of possession: couriers' phone keys; an entry's grant and hub challenge

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import doorstep.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("point", sa.LargeBinary(length=33), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("created_at", doorstep.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", doorstep.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_device_keys_user_id", "device_keys", ["user_id"])
    with op.batch_alter_table("entries") as batch:
        batch.add_column(sa.Column("grant_token", sa.Text(), nullable=True))
        batch.add_column(sa.Column("challenge", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("device_key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("device_key_id")
        batch.drop_column("challenge")
        batch.drop_column("grant_token")
    op.drop_index("ix_device_keys_user_id", table_name="device_keys")
    op.drop_table("device_keys")
