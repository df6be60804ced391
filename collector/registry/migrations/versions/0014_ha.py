"""high availability (issue 16): issuer state (internal CA, ACME account, collector CA) in the registry, wrapped keys

A slot reserved so that work on several issues can add its schema in parallel; empty until
that work lands (an empty upgrade changes nothing).

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
