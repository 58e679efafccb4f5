"""clips: an entry may keep deleted clip rows beside its one live clip

A hub that cut an entry's video into a new clip (after losing its upload queue, or
restored from a backup) supersedes the upload it never finished (`clips.service`):
the old row stays, deleted, so a hub that announces it again is told it is gone. So
"one clip per entry" now counts only the clips that are not deleted.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_LIVE = sa.text("state != 'deleted'")
# 0010 left the constraint unnamed; SQLite's batch mode names it by this convention.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    [name] = [
        unique["name"]
        for unique in sa.inspect(op.get_bind()).get_unique_constraints("clips")
        if unique["column_names"] == ["entry_id"]
    ]
    with op.batch_alter_table("clips", naming_convention=_NAMING) as batch:
        batch.drop_constraint(name or "uq_clips_entry_id", type_="unique")
    op.create_index("ix_clips_entry_id", "clips", ["entry_id"])
    op.create_index(
        "uq_clips_entry_id_live",
        "clips",
        ["entry_id"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    # Only one row per entry fits the old constraint: the deleted rows beside another go.
    op.execute(
        "DELETE FROM clips WHERE state = 'deleted' AND entry_id IN"
        " (SELECT entry_id FROM clips GROUP BY entry_id HAVING count(*) > 1)"
    )
    op.drop_index("uq_clips_entry_id_live", table_name="clips")
    op.drop_index("ix_clips_entry_id", table_name="clips")
    with op.batch_alter_table("clips", naming_convention=_NAMING) as batch:
        batch.create_unique_constraint("uq_clips_entry_id", ["entry_id"])
