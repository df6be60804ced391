"""The registry contract suite: every test here that takes ``registry`` or ``db_url`` runs against
SQLite and PostgreSQL (tests/helpers/registry_backends.py defines the backends and these fixtures)."""
from __future__ import annotations

from tests.helpers.registry_backends import db_url, make_agent, pg_admin, registry  # noqa: F401 - fixtures

__all__ = ["db_url", "make_agent", "pg_admin", "registry"]
