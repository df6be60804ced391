"""owners, assignment rules and explicit assignments

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies of the model types (a migration must not change when the models do).
TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("contacts", JSON, nullable=False),
        sa.Column("webhook", sa.Text(), nullable=False),
        sa.Column("escalation", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_owners"),
        sa.UniqueConstraint("name", name="uq_owners_name"),
    )

    op.create_table(
        "assignment_rules",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("owner_id", BIGID, nullable=True),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("criticality", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("host_glob", sa.Text(), nullable=False),
        sa.Column("path_glob", sa.Text(), nullable=False),
        sa.Column("san_glob", sa.Text(), nullable=False),
        sa.Column("issuer_contains", sa.Text(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], name="fk_assignment_rules_owner_id_owners"),
        sa.PrimaryKeyConstraint("id", name="pk_assignment_rules"),
        sa.UniqueConstraint("name", name="uq_assignment_rules_name"),
        sa.UniqueConstraint("priority", name="uq_assignment_rules_priority"),
    )
    op.create_index("ix_assignment_rules_owner_id", "assignment_rules", ["owner_id"])

    op.create_table(
        "explicit_assignments",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("target_key", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("store_type", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("owner_id", BIGID, nullable=True),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("criticality", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("assigned_by", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["fingerprint"], ["certificates.fingerprint"], name="fk_explicit_assignments_fingerprint_certificates"
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name="fk_explicit_assignments_agent_id_agents", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], name="fk_explicit_assignments_owner_id_owners"),
        sa.PrimaryKeyConstraint("id", name="pk_explicit_assignments"),
        sa.UniqueConstraint("target_key", name="uq_explicit_assignments_target_key"),
    )
    op.create_index("ix_explicit_assignments_fingerprint", "explicit_assignments", ["fingerprint"])
    op.create_index("ix_explicit_assignments_agent_id", "explicit_assignments", ["agent_id"])
    op.create_index("ix_explicit_assignments_owner_id", "explicit_assignments", ["owner_id"])


def downgrade() -> None:
    op.drop_table("explicit_assignments")
    op.drop_table("assignment_rules")
    op.drop_table("owners")
