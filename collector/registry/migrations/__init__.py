"""Alembic migrations of the registry schema (run by collector.registry.db.upgrade; ``env.py``
gives Alembic the models' metadata for autogenerate). The scripts in ``versions/`` import only
Alembic and SQLAlchemy, never the models, so that each revision keeps making what it made."""
