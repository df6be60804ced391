"""hardening (issue 12): keyed audit chain, checkpoints, report spooling

A slot reserved so that work on several issues can add its schema in parallel; empty until
that work lands (an empty upgrade changes nothing).

Revision ID: 0012
Revises: 0011
"""
from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
