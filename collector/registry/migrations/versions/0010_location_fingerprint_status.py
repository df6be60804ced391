"""locations indexed by (fingerprint, status): the expiry reports and the notifier count and read
the present locations of a page of certificates from the index alone

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_locations_fingerprint_status", "locations", ["fingerprint", "status"])
    # the composite index serves every lookup the single-column one did
    op.drop_index("ix_locations_fingerprint", table_name="locations")


def downgrade() -> None:
    op.create_index("ix_locations_fingerprint", "locations", ["fingerprint"])
    op.drop_index("ix_locations_fingerprint_status", table_name="locations")
