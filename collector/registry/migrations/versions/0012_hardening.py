"""hardening (issue 12): keyed audit chain, checkpoints, report spooling

No schema change is needed, on purpose:

- the keyed audit chain is marked by its cut-over event (action ``audit.keyed``, recorded by the
  collector at its first start with an audit key, collector/registry/audit.py ``cut_over``): a
  migration cannot do it, as the key is outside the database and only the collector reads it.
  Events before it keep their SHA-256 hashes and stay verifiable; the cut-over links to them;
- signed checkpoints are audit events (``audit.checkpoint``) in the chain they anchor;
- reports are spooled in memory or temporary files, never in the database.

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
