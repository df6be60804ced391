"""Alembic environment for the registry.

Used programmatically: collector.registry.db.upgrade passes an open connection
in ``config.attributes["connection"]``. From the command line (developers making
a new revision) the URL comes from ``sqlalchemy.url`` or ``CERTFLEET_DATABASE_URL``.
"""
from __future__ import annotations

import os

from alembic import context

from collector.registry.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from collector.registry.db import create_registry_engine  # only when Alembic runs without a connection

    url = os.environ.get("CERTFLEET_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set CERTFLEET_DATABASE_URL or sqlalchemy.url to run migrations")
    engine = create_registry_engine(url)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
