"""policies, exceptions and violations

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen copies of the model types (a migration must not change when the models do).
TS = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "policy_documents",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_policy_documents"),
    )
    op.create_table(
        "policy_violations",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("active_key", sa.String(64), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("location_key", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("store_type", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("chain_index", sa.Integer(), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("exception_id", BIGID, nullable=True),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("cleared_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_policy_violations"),
        sa.UniqueConstraint("active_key", name="uq_policy_violations_active_key"),
    )
    op.create_index("ix_policy_violations_fingerprint", "policy_violations", ["fingerprint"])
    op.create_index("ix_policy_violations_agent_id_cleared_at", "policy_violations", ["agent_id", "cleared_at"])
    op.create_index("ix_policy_violations_cleared_at_rule", "policy_violations", ["cleared_at", "rule"])
    op.create_table(
        "policy_exceptions",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("expiry_reported_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_policy_exceptions"),
    )
    op.create_index("ix_policy_exceptions_expires_at", "policy_exceptions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("policy_exceptions")
    op.drop_table("policy_violations")
    op.drop_table("policy_documents")
