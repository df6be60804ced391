"""Alembic migrations of the registry schema (run by collector.registry.db.upgrade)."""
