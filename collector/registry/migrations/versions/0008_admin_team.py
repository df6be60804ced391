"""admin identities carry the owner team they act for

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the owner (team) an identity of role ``owner`` acts for; NULL for the other roles
    op.add_column("admin_identities", sa.Column("team", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admin_identities") as batch:
        batch.drop_column("team")
