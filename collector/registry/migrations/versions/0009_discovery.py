"""discovery beyond files: location role, endpoint details, process links, stale services,
Windows store entries; network scan jobs

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Frozen copies of the model types (a migration must not change when the models do).
TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("locations") as batch:
        # service (used by a service) or trust_anchor (an entry of a trust store)
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="service"))
        batch.add_column(sa.Column("endpoint", JSON, nullable=True))        # store_type endpoint: handshake facts
        batch.add_column(sa.Column("processes", JSON, nullable=True))       # [ProcessLink as dict, ...]
        batch.add_column(sa.Column("windows", JSON, nullable=True))         # {entry: {...}, iis_bindings: [...]}
        # stale: the process that uses this file serves another certificate
        batch.add_column(sa.Column("stale_served_fingerprint", sa.String(64), nullable=True))
        batch.add_column(sa.Column("stale_endpoint", sa.Text(), nullable=True))
        batch.add_column(sa.Column("stale_detail", JSON, nullable=True))    # {pid, process_name}
        batch.add_column(sa.Column("stale_since", TS, nullable=True))
    op.create_index("ix_locations_stale_since", "locations", ["stale_since"])

    op.create_table(
        "network_scans",
        sa.Column("scan_id", sa.String(36), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("targets", JSON, nullable=False),
        sa.Column("ports", JSON, nullable=False),
        sa.Column("rate_per_second", sa.Float(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("starttls", JSON, nullable=False),
        sa.Column("sni_names", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),    # queued, sent, running, done, failed
        sa.Column("targets_total", sa.Integer(), nullable=False),
        sa.Column("probed", sa.Integer(), nullable=False),
        sa.Column("tls_found", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("scan_id", name="pk_network_scans"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.agent_id"], name="fk_network_scans_agent_id_agents",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_network_scans_agent_id_state", "network_scans", ["agent_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_network_scans_agent_id_state", table_name="network_scans")
    op.drop_table("network_scans")
    op.drop_index("ix_locations_stale_since", table_name="locations")
    with op.batch_alter_table("locations") as batch:
        for col in ("stale_since", "stale_detail", "stale_endpoint", "stale_served_fingerprint",
                    "windows", "processes", "endpoint", "role"):
            batch.drop_column(col)
