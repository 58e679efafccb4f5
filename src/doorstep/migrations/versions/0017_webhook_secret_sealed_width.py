"""webhook_endpoints.secret: wide enough for a sealed secret

Carriers' webhook signing secrets are now stored sealed (`notify.sealing`), which is
longer than the plain secret. The rows stay as they are: sealing needs the key file,
which migrations do not have, so the dispatcher seals the plain ones when it starts.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# 0003 left the constraint unnamed; SQLite's batch mode names it by this convention.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", naming_convention=_NAMING) as batch:
        batch.alter_column(
            "secret", type_=sa.String(length=200), existing_type=sa.String(length=100)
        )


def downgrade() -> None:
    # A sealed secret neither fits the old width nor opens in the old code: those
    # endpoints are turned off (their carriers set them again, which makes a new secret).
    op.get_bind().execute(
        sa.text(
            "UPDATE webhook_endpoints SET active = :off, secret = 'whsec_unusable'"
            " WHERE substr(secret, 1, 6) <> 'whsec_'"
        ),
        {"off": False},
    )
    with op.batch_alter_table("webhook_endpoints", naming_convention=_NAMING) as batch:
        batch.alter_column(
            "secret", type_=sa.String(length=100), existing_type=sa.String(length=200)
        )
