"""emails set aside as skipped keep no text

An email set aside as `skipped` (no SMTP server configured) is never sent later, yet kept
its text, which may hold a live single-use link (a guest invitation, a password reset):
since this release the dispatcher drops it as it does for sent mail (0014); this removes
it from the rows skipped before. Nothing to undo: the text is gone.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE outbox SET payload = (payload::jsonb - 'text')::json"
            " WHERE channel = 'email' AND state = 'skipped'"
        )
    else:
        op.execute(
            "UPDATE outbox SET payload = json_remove(payload, '$.text')"
            " WHERE channel = 'email' AND state = 'skipped'"
        )


def downgrade() -> None:
    pass  # the text is not kept anywhere to put back
