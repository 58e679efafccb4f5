"""clips uploaded to the service: clip rows, each home's video key and settings

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import doorstep.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clips",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("entry_id", sa.String(length=32), nullable=False),
        sa.Column("home_id", sa.String(length=32), nullable=False),
        sa.Column("hub_id", sa.String(length=32), nullable=False),
        sa.Column("access_point", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", doorstep.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", doorstep.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("recording", sa.JSON(), nullable=False),
        sa.Column("video_size", sa.BigInteger(), nullable=False),
        sa.Column("video_sha256", sa.String(length=64), nullable=False),
        sa.Column("thumbnail_size", sa.Integer(), nullable=False),
        sa.Column("thumbnail_sha256", sa.String(length=64), nullable=False),
        sa.Column("motion_beyond_zone", sa.Boolean(), nullable=True),
        sa.Column("motion_seconds", sa.Float(), nullable=True),
        sa.Column("motion_beyond_seconds", sa.Float(), nullable=True),
        sa.Column("presence_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", doorstep.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stored_at", doorstep.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", doorstep.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delete_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["entry_id"], ["entries.id"]),
        sa.ForeignKeyConstraint(["home_id"], ["homes.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_id"),
    )
    op.create_index("ix_clips_home_id", "clips", ["home_id"])
    op.create_index("ix_clips_stored_at", "clips", ["stored_at"])
    op.create_table(
        "home_video",
        sa.Column("home_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(length=64), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("drop_zone", sa.JSON(), nullable=True),
        sa.Column("created_at", doorstep.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", doorstep.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["home_id"], ["homes.id"]),
        sa.PrimaryKeyConstraint("home_id"),
    )


def downgrade() -> None:
    op.drop_table("home_video")
    op.drop_index("ix_clips_stored_at", table_name="clips")
    op.drop_index("ix_clips_home_id", table_name="clips")
    op.drop_table("clips")
