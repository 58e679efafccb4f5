"""access grants, guests, invitations, providers, hub shadows

One model for every guest and provider visit (`access_grants`), the invitations that
give guests and workers their accounts, provider organisations, their members and the
homes that blocked them, and the version of each hub's shadow document. Entries say
who came and how (purpose, grant, method); hubs get the key keypad codes are sealed to.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import doorstep.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _time(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, doorstep.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _time("created_at", nullable=False),
    )
    op.create_table(
        "provider_members",
        sa.Column("provider_id", sa.String(32), sa.ForeignKey("providers.id"), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _time("created_at", nullable=False),
    )
    op.create_index("ix_provider_members_user_id", "provider_members", ["user_id"])
    op.create_table(
        "provider_blocks",
        sa.Column("home_id", sa.String(32), sa.ForeignKey("homes.id"), primary_key=True),
        sa.Column("provider_id", sa.String(32), sa.ForeignKey("providers.id"), primary_key=True),
        _time("created_at", nullable=False),
    )
    op.create_table(
        "access_grants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("home_id", sa.String(32), sa.ForeignKey("homes.id"), nullable=False),
        sa.Column(
            "access_point_id", sa.String(32), sa.ForeignKey("access_points.id"), nullable=False
        ),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("grantee_id", sa.String(32), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("provider_id", sa.String(32), sa.ForeignKey("providers.id"), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        _time("starts_at"),
        _time("ends_at"),
        sa.Column("windows", sa.Text(), nullable=False),
        sa.Column("uses_limit", sa.Integer(), nullable=True),
        sa.Column("require_geofence", sa.Boolean(), nullable=False),
        sa.Column("pin_digest", sa.String(200), nullable=True),
        sa.Column("pin_sealed", sa.Text(), nullable=True),
        sa.Column("notes", sa.String(500), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=False),
        _time("created_at", nullable=False),
        _time("revoked_at"),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.Column("revoked_version", sa.Integer(), nullable=True),
    )
    op.create_index("ix_access_grants_home", "access_grants", ["home_id", "created_at"])
    op.create_index("ix_access_grants_grantee", "access_grants", ["grantee_id"])
    op.create_index("ix_access_grants_provider", "access_grants", ["provider_id"])
    op.create_index("ix_access_grants_access_point", "access_grants", ["access_point_id"])
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("grant_id", sa.String(32), sa.ForeignKey("access_grants.id"), nullable=True),
        sa.Column("provider_id", sa.String(32), sa.ForeignKey("providers.id"), nullable=True),
        sa.Column("token_digest", sa.String(64), nullable=False, unique=True),
        _time("expires_at", nullable=False),
        _time("accepted_at"),
        _time("created_at", nullable=False),
    )
    op.create_index("ix_invitations_user_id", "invitations", ["user_id"])
    op.create_table(
        "hub_shadows",
        sa.Column("hub_id", sa.String(32), sa.ForeignKey("hubs.id"), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _time("changed_at", nullable=False),
        sa.Column("reported_version", sa.Integer(), nullable=False),
        _time("reported_at"),
        sa.Column("reported", sa.Text(), nullable=False),
    )
    op.add_column("hubs", sa.Column("seal_key", sa.LargeBinary(32), nullable=True))
    with op.batch_alter_table("entries") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(16), nullable=False, server_default="delivery")
        )
        batch.add_column(sa.Column("method", sa.String(16), nullable=False, server_default="app"))
        batch.add_column(sa.Column("grant_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_entries_grant_id", "access_grants", ["grant_id"], ["id"])
    op.create_index("ix_entries_grant_id", "entries", ["grant_id"])


def downgrade() -> None:
    op.drop_index("ix_entries_grant_id", table_name="entries")
    with op.batch_alter_table("entries") as batch:
        batch.drop_constraint("fk_entries_grant_id", type_="foreignkey")
        batch.drop_column("grant_id")
        batch.drop_column("method")
        batch.drop_column("purpose")
    with op.batch_alter_table("hubs") as batch:
        batch.drop_column("seal_key")
    op.drop_table("hub_shadows")
    op.drop_index("ix_invitations_user_id", table_name="invitations")
    op.drop_table("invitations")
    for name in ("access_point", "provider", "grantee", "home"):
        op.drop_index(f"ix_access_grants_{name}", table_name="access_grants")
    op.drop_table("access_grants")
    op.drop_table("provider_blocks")
    op.drop_index("ix_provider_members_user_id", table_name="provider_members")
    op.drop_table("provider_members")
    op.drop_table("providers")
