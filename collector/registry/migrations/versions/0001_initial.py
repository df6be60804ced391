"""initial schema: certificates, agents, locations, scan errors, tokens, admin identities

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the model types (a migration must not change when the models do).
TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BLOB = sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("subject_hash", sa.String(32), nullable=False),
        sa.Column("issuer_hash", sa.String(32), nullable=False),
        sa.Column("serial", sa.Text(), nullable=False),
        sa.Column("sans", JSON, nullable=False),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("key_type", sa.Text(), nullable=False),
        sa.Column("key_size", sa.Integer(), nullable=False),
        sa.Column("key_curve", sa.Text(), nullable=False),
        sa.Column("signature_algorithm", sa.Text(), nullable=False),
        sa.Column("is_ca", sa.Boolean(), nullable=False),
        sa.Column("self_signed", sa.Boolean(), nullable=False),
        sa.Column("key_usage", JSON, nullable=False),
        sa.Column("extended_key_usage", JSON, nullable=False),
        sa.Column("subject_key_id", sa.Text(), nullable=False),
        sa.Column("authority_key_id", sa.Text(), nullable=False),
        sa.Column("issuer_fingerprint", sa.String(64), nullable=True),
        sa.Column("der", BLOB, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_fingerprint"], ["certificates.fingerprint"],
            name="fk_certificates_issuer_fingerprint_certificates", ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_certificates"),
    )
    op.create_index("ix_certificates_issuer_fingerprint", "certificates", ["issuer_fingerprint"])
    op.create_index("ix_certificates_issuer_hash", "certificates", ["issuer_hash"])
    op.create_index("ix_certificates_subject_hash", "certificates", ["subject_hash"])
    op.create_index("ix_certificates_not_after_fingerprint", "certificates", ["not_after", "fingerprint"])

    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("os", sa.Text(), nullable=False),
        sa.Column("os_version", sa.Text(), nullable=False),
        sa.Column("agent_version", sa.Text(), nullable=False),
        sa.Column("addresses", JSON, nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=False),
        sa.Column("identity_serial", sa.Text(), nullable=False),
        sa.Column("identity_not_after", TS, nullable=True),
        sa.Column("previous_identity_serial", sa.Text(), nullable=False),
        sa.Column("previous_identity_valid_until", TS, nullable=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_report_id", sa.Text(), nullable=False),
        sa.Column("last_report_at", TS, nullable=True),
        sa.Column("report_generation", sa.BigInteger(), nullable=False),
        sa.Column("resync_requested", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name="pk_agents"),
    )
    op.create_index("ix_agents_hostname", "agents", ["hostname"])

    op.create_table(
        "locations",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("store_type", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("chain_index", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("has_private_key", sa.Boolean(), nullable=False),
        sa.Column("key_encrypted", sa.Boolean(), nullable=False),
        sa.Column("key_match", sa.Text(), nullable=False),
        sa.Column("entry_type", sa.Text(), nullable=False),
        sa.Column("file_owner", sa.Text(), nullable=False),
        sa.Column("file_group", sa.Text(), nullable=False),
        sa.Column("file_mode", sa.Integer(), nullable=False),
        sa.Column("file_mtime", TS, nullable=True),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("removed_at", TS, nullable=True),
        sa.Column("seen_generation", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name="fk_locations_agent_id_agents", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["fingerprint"], ["certificates.fingerprint"], name="fk_locations_fingerprint_certificates"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_locations"),
        sa.UniqueConstraint(
            "agent_id", "store_type", "path", "alias", "chain_index",
            name="uq_locations_agent_id_store_type_path_alias_chain_index",
        ),
    )
    op.create_index("ix_locations_agent_id_status", "locations", ["agent_id", "status"])
    op.create_index("ix_locations_fingerprint", "locations", ["fingerprint"])

    op.create_table(
        "scan_errors",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("store_type", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("observed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name="fk_scan_errors_agent_id_agents", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_scan_errors"),
    )
    op.create_index("ix_scan_errors_agent_id", "scan_errors", ["agent_id"])

    op.create_table(
        "enrollment_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("used_by_agent", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_enrollment_tokens"),
    )

    op.create_table(
        "admin_identities",
        sa.Column("serial", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("serial", name="pk_admin_identities"),
    )


def downgrade() -> None:
    op.drop_table("admin_identities")
    op.drop_table("enrollment_tokens")
    op.drop_table("scan_errors")
    op.drop_table("locations")
    op.drop_table("agents")
    op.drop_table("certificates")
