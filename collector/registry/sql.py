"""Statement helpers the stores share: long IN lists in chunks, and the dialect's own INSERT
(for ``ON CONFLICT``), on SQLite and PostgreSQL alike. Imports SQLAlchemy only."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

#: how many values go into one IN (...) list
IN_CHUNK = 1000


def chunked(items: Sequence[Any], n: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def dialect_insert(conn: Connection, table: Any) -> Any:
    """``INSERT`` of the connection's dialect, which knows ``on_conflict_do_nothing/update``."""
    if conn.dialect.name == "postgresql":
        return pg_dialect.insert(table)
    return sqlite_dialect.insert(table)
