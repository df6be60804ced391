"""issuance authority (issue 11): agent names and collector-side labels, token host binding, name grants, host allows, approvals

- agents: ``reported_hostname`` (what the agent last said; ``hostname`` is the name recorded at
  enrollment, changed only by an admin's rename) and ``admin_labels`` (labels that decide rights,
  set on the collector);
- enrollment_tokens: ``bound_host`` (the host name a token enrolls, "" when not bound);
- name_grants: owner -> name pattern (``wins`` when an admin chose it over an overlapping grant);
- name_allows: which agents (host glob, agent id or collector-side label) may receive a pattern;
- approvals: one per job waiting for a human, with the reasons and the decision;
- jobs.state, job_events.from_state/to_state: 24 characters (``awaiting_approval``).

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # a job's state may be awaiting_approval (17 characters)
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("state", type_=sa.String(24), existing_type=sa.String(16), existing_nullable=False)
    with op.batch_alter_table("job_events") as batch:
        batch.alter_column("from_state", type_=sa.String(24), existing_type=sa.String(16), existing_nullable=False)
        batch.alter_column("to_state", type_=sa.String(24), existing_type=sa.String(16), existing_nullable=False)
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("reported_hostname", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("admin_labels", JSON, nullable=True))
    with op.batch_alter_table("enrollment_tokens") as batch:
        batch.add_column(sa.Column("bound_host", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "name_grants",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("pattern", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("wins", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_name_grants"),
        sa.UniqueConstraint("owner", "pattern", name="uq_name_grants_owner"),
    )
    op.create_table(
        "name_allows",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("pattern", sa.String(300), nullable=False),
        sa.Column("hosts", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_name_allows"),
    )
    op.create_table(
        "approvals",
        sa.Column("approval_id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("names", JSON, nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=False),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("approval_id", name="pk_approvals"),
        sa.UniqueConstraint("job_id", name="uq_approvals_job_id"),
        sa.UniqueConstraint("dedupe_key", name="uq_approvals_dedupe_key"),
    )
    op.create_index("ix_approvals_state", "approvals", ["state"])


def downgrade() -> None:
    op.drop_index("ix_approvals_state", table_name="approvals")
    op.drop_table("approvals")
    op.drop_table("name_allows")
    op.drop_table("name_grants")
    with op.batch_alter_table("enrollment_tokens") as batch:
        batch.drop_column("bound_host")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("admin_labels")
        batch.drop_column("reported_hostname")
    with op.batch_alter_table("job_events") as batch:
        batch.alter_column("from_state", type_=sa.String(16), existing_type=sa.String(24), existing_nullable=False)
        batch.alter_column("to_state", type_=sa.String(16), existing_type=sa.String(24), existing_nullable=False)
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("state", type_=sa.String(16), existing_type=sa.String(24), existing_nullable=False)
