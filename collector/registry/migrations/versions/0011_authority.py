"""issuance authority (issue 11): agent names and collector-side labels, token host binding, name grants, host allows, approvals

A slot reserved so that work on several issues can add its schema in parallel; empty until
that work lands (an empty upgrade changes nothing).

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
