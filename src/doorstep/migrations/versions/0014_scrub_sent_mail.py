"""sent and given-up emails keep no text

Their text may hold a live single-use link (a guest invitation, a password reset):
since this release the dispatcher drops it when an email is final (`notify.dispatcher`);
this removes it from the rows sent before. Nothing to undo: the text is gone.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE outbox SET payload = (payload::jsonb - 'text')::json"
            " WHERE channel = 'email' AND state IN ('sent', 'failed')"
        )
    else:
        op.execute(
            "UPDATE outbox SET payload = json_remove(payload, '$.text')"
            " WHERE channel = 'email' AND state IN ('sent', 'failed')"
        )


def downgrade() -> None:
    pass  # the text is not kept anywhere to put back
