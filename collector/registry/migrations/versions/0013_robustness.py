"""robustness (issue 13): job results that newer scans must not overwrite, not-yet-valid facts

A slot reserved so that work on several issues can add its schema in parallel; empty until
that work lands (an empty upgrade changes nothing).

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
