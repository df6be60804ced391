"""Migrations build the schema from an empty database, and it matches the models."""
from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, inspect, text

from collector.registry import Registry, db
from collector.registry.models import Base


def test_migrations_create_schema_from_empty(db_url: str) -> None:
    engine = db.create_registry_engine(db_url)
    try:
        assert not inspect(engine).get_table_names()
    finally:
        engine.dispose()

    with Registry.open(db_url) as reg:
        head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
        assert db.current_revision(reg.engine) == head
        names = set(inspect(reg.engine).get_table_names())
        assert {"certificates", "agents", "locations", "scan_errors", "enrollment_tokens",
                "admin_identities", "alembic_version"} <= names
        with reg.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diffs == [], f"models and migrations disagree: {diffs}"

    # opening again is a no-op, and works from any working directory
    with Registry.open(db_url) as reg:
        assert db.current_revision(reg.engine) == head
        # and the migrations can be undone and redone
        from alembic import command

        cfg = db.alembic_config()
        with reg.engine.connect().execution_options(**db.WRITE) as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
            conn.commit()
        assert set(inspect(reg.engine).get_table_names()) <= {"alembic_version"}
        db.upgrade(reg.engine)
        assert db.current_revision(reg.engine) == head


def test_sqlite_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Registry.open(f"sqlite:///{tmp_path / 'r.db'}") as reg, reg.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_naive_datetimes_are_refused(registry: Registry) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        registry.create_token("ab" * 32, dt.datetime(2030, 1, 1), "naive", dt.datetime.now(dt.timezone.utc))


def test_bad_urls_are_clear() -> None:
    from collector.errors import InvalidInput

    with pytest.raises(InvalidInput, match="not valid"):
        Registry.open("no scheme here")
    with pytest.raises(InvalidInput, match="unsupported database"):
        Registry.open("mysql://localhost/x")


def test_bulk_sqlite_conversions_match_the_column_types() -> None:
    """The SQLite fast path must store exactly what SQLAlchemy would (reads and comparisons rely on it)."""
    from zoneinfo import ZoneInfo

    from sqlalchemy.dialects import sqlite

    from collector.registry.bulk import DATETIME_COLUMNS, JSON_COLUMNS, SqliteBulk
    from collector.registry.models.inventory import certificates, locations

    dialect = sqlite.dialect()
    cols = {c.name: c for t in (certificates, locations) for c in t.c}
    assert set(SqliteBulk.CONVERT) == DATETIME_COLUMNS | JSON_COLUMNS
    samples = {
        "datetime": [dt.datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=dt.timezone.utc),
                     dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=ZoneInfo("Europe/Berlin")),
                     dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
                     None],
        "json": [[], [["dns", "a.example"], ["ip", "::1"]], {"k": "v", "ü": "ß"}, ["serverAuth"]],
    }
    for name, convert in SqliteBulk.CONVERT.items():
        reference = cols[name].type._cached_bind_processor(dialect)
        for v in samples["datetime" if name in DATETIME_COLUMNS else "json"]:
            if v is None and name not in ("removed_at", "file_mtime"):
                continue
            assert convert(v) == (reference(v) if reference else v), (name, v)
    # every other column goes as it is: sqlite3 stores bool as 1/0, as SQLAlchemy's Boolean does
    for t in (certificates, locations):
        for c in t.c:
            if c.name in SqliteBulk.CONVERT:
                continue
            proc = c.type._cached_bind_processor(dialect)
            assert proc is None or isinstance(c.type, Boolean), c.name
            if proc is not None:
                assert proc(True) == 1 and proc(False) == 0
