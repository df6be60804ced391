"""high availability (issue 16): issuer state (internal CA, ACME account, collector CA) in the registry, wrapped keys

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Frozen copies of the model types (a migration must not change when the models do).
TS = sa.DateTime(timezone=True)
BLOB = sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ca_hierarchies",
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("root_pem", sa.Text(), nullable=False),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("key_store", sa.String(16), nullable=False),
        sa.Column("key_ref", BLOB, nullable=False),
        sa.Column("root_key_ref", BLOB, nullable=True),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("crl_der", BLOB, nullable=True),
        sa.Column("crl_revision", sa.BigInteger(), nullable=False),
        sa.Column("crl_next_update", TS, nullable=True),
        sa.PrimaryKeyConstraint("issuer", name="pk_ca_hierarchies"),
    )
    op.create_table(
        "ca_issued",
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("names", JSON, nullable=False),
        sa.Column("template", sa.String(128), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("issued_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "serial", name="pk_ca_issued"),
    )
    op.create_table(
        "ca_revoked",
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=False),
        sa.Column("revoked_at", TS, nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.PrimaryKeyConstraint("issuer", "serial", name="pk_ca_revoked"),
    )
    op.create_table(
        "issuer_secrets",
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("wrapped", BLOB, nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("public", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("issuer", "kind", name="pk_issuer_secrets"),
    )


def downgrade() -> None:
    op.drop_table("issuer_secrets")
    op.drop_table("ca_revoked")
    op.drop_table("ca_issued")
    op.drop_table("ca_hierarchies")
