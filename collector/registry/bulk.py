"""Bulk writes of certificates and locations, the fastest way each database allows.

Reports bring tens of thousands of rows. Going through SQLAlchemy's generic
executemany costs more than the database work itself, so the two hot writes
have one implementation per backend, behind the same two methods:

- SQLite: the statement is compiled once; rows become tuples (values converted
  exactly as the columns' SQLAlchemy types would, but without the per-value
  machinery) and go to the driver's ``executemany``.
- PostgreSQL: rows are streamed with COPY into a temporary staging table, then
  moved with one ``INSERT ... SELECT ... ON CONFLICT`` statement.

Both keep the semantics of the Core statements they replace (the same
ON CONFLICT clauses, the same column types and conversions).
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable, Sequence

from sqlalchemy import BigInteger, Boolean, Connection, Integer, LargeBinary, String, Text, case, column, select, table
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite

from collector.registry.models.inventory import certificates, locations

CERT_COLUMNS = [c.name for c in certificates.c]
LOCATION_KEY = ["agent_id", "store_type", "path", "alias", "chain_index"]
LOCATION_COLUMNS = [c.name for c in locations.c if c.name != "id"]
JSON_COLUMNS = {"sans", "key_usage", "extended_key_usage", "labels", "endpoint", "processes", "windows", "stale_detail"}
DATETIME_COLUMNS = {"not_before", "not_after", "first_seen", "last_seen", "removed_at", "file_mtime", "stale_since"}
UTC = dt.timezone.utc


def _naive(v: dt.datetime) -> ValueError:
    return ValueError(f"naive datetime {v!r} given to the registry; use an aware UTC datetime")


def sqlite_datetime(v: dt.datetime | None) -> str | None:
    """What UTCDateTime + SQLAlchemy's SQLite DATETIME store, without the per-value machinery."""
    if v is None:
        return None
    if v.tzinfo is None:
        raise _naive(v)
    if v.tzinfo is not UTC:
        v = v.astimezone(UTC)
    return v.replace(tzinfo=None).isoformat(" ", "microseconds")


def location_update_set(ex: Any) -> dict[str, Any]:
    """What an upsert changes on an existing location (``ex``: the incoming row)."""
    t = locations.c
    values = {name: getattr(ex, name) for name in LOCATION_COLUMNS if name not in LOCATION_KEY}
    # first_seen is when this location started to hold its current certificate
    values["first_seen"] = case((t.fingerprint == ex.fingerprint, t.first_seen), else_=ex.first_seen)
    # stale since the first report of this mismatch (the same served certificate)
    values["stale_since"] = case(
        (t.stale_served_fingerprint == ex.stale_served_fingerprint, t.stale_since), else_=ex.stale_since)
    return values


class BulkWriter:
    def existing_fingerprints(self, fps: Sequence[str]) -> set[str]:
        """Which of ``fps`` are stored certificates."""
        raise NotImplementedError

    def insert_certificates(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert certificate rows, skipping fingerprints already stored; return how many were new."""
        raise NotImplementedError

    def upsert_locations(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or update location rows by (agent, store type, path, alias, chain index)."""
        raise NotImplementedError


def bulk_writer(conn: Connection) -> BulkWriter:
    if conn.dialect.name == "postgresql":
        return PostgresBulk(conn)
    return SqliteBulk(conn)


class SqliteBulk(BulkWriter):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        ins = sqlite.insert(certificates).on_conflict_do_nothing(index_elements=["fingerprint"])
        self._certs = self._prepare(ins, CERT_COLUMNS, certificates)
        ins = sqlite.insert(locations)
        ins = ins.on_conflict_do_update(index_elements=LOCATION_KEY, set_=location_update_set(ins.excluded))
        self._locs = self._prepare(ins, LOCATION_COLUMNS, locations)

    # Converters giving exactly what the columns' SQLAlchemy types would bind
    # (checked by tests/registry/test_registry_schema.py); bool, int, str and bytes go as they are.
    CONVERT: dict[str, Callable[[Any], Any]] = {
        **{n: sqlite_datetime for n in DATETIME_COLUMNS},
        **{n: json.dumps for n in JSON_COLUMNS},
    }

    def _prepare(self, stmt: Any, names: list[str], tbl: Any) -> tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]:
        compiled = stmt.compile(dialect=self.conn.dialect, column_keys=names)
        order = list(compiled.positiontup or ())
        if sorted(order) != sorted(names):
            raise RuntimeError(f"unexpected parameters in bulk statement: {order}")
        return compiled.string, [(name, self.CONVERT.get(name)) for name in order]

    def existing_fingerprints(self, fps: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(fps), 500):
            part = list(fps[i:i + 500])
            sql = f"SELECT fingerprint FROM certificates WHERE fingerprint IN ({', '.join('?' * len(part))})"
            found.update(r[0] for r in self.conn.exec_driver_sql(sql, tuple(part)))
        return found

    def _run(self, prepared: tuple[str, list[tuple[str, Callable[[Any], Any] | None]]],
             rows: Sequence[dict[str, Any]]) -> int:
        sql, procs = prepared
        columns = [[r[n] for r in rows] if p is None else [p(r[n]) for r in rows] for n, p in procs]
        return self.conn.exec_driver_sql(sql, list(zip(*columns))).rowcount  # type: ignore[arg-type]

    def insert_certificates(self, rows: Sequence[dict[str, Any]]) -> int:
        return max(self._run(self._certs, rows), 0) if rows else 0

    def upsert_locations(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._run(self._locs, rows)


def _pg_copy_type(col: Any) -> str:
    """The PostgreSQL type a column's values are sent as in a binary COPY."""
    if col.name in JSON_COLUMNS:
        return "jsonb"
    if col.name in DATETIME_COLUMNS:
        return "timestamptz"
    t = col.type
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, BigInteger):
        return "int8"
    if isinstance(t, Integer):
        return "int4"
    if isinstance(t, LargeBinary):
        return "bytea"
    if isinstance(t, (String, Text)):
        return "text"
    raise TypeError(f"no COPY type for column {col.name} ({t!r})")


class PostgresBulk(BulkWriter):
    STAGE_CERTS = "certfleet_stage_certificates"
    STAGE_LOCS = "certfleet_stage_locations"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._staged: set[str] = set()
        dialect = conn.dialect
        stage = table(self.STAGE_CERTS, *[column(n) for n in CERT_COLUMNS])
        # in fingerprint order: concurrent reports bringing the same new certificates
        # take their row locks in the same order
        ins = pg.insert(certificates).from_select(CERT_COLUMNS, select(*stage.c).order_by(stage.c.fingerprint))
        ins = ins.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(certificates.c.fingerprint)
        self._certs_sql = str(ins.compile(dialect=dialect))
        stage = table(self.STAGE_LOCS, *[column(n) for n in LOCATION_COLUMNS])
        ins = pg.insert(locations).from_select(LOCATION_COLUMNS, select(*stage.c))
        ins = ins.on_conflict_do_update(index_elements=LOCATION_KEY, set_=location_update_set(ins.excluded))
        self._locs_sql = str(ins.compile(dialect=dialect))

    def existing_fingerprints(self, fps: Sequence[str]) -> set[str]:
        if not fps:
            return set()
        rows = self.conn.exec_driver_sql(
            "SELECT fingerprint FROM certificates WHERE fingerprint = ANY(%s::varchar[])", (list(fps),)
        )
        return {r[0] for r in rows}

    def _stage(self, name: str, source_table: Any, names: list[str], rows: Sequence[dict[str, Any]]) -> None:
        from psycopg.types.json import Jsonb   # PostgreSQL only: SQLite installs need no psycopg

        source = source_table.name
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur:  # type: ignore[union-attr]
            if name not in self._staged:
                # Same column types as the real table, no constraints; gone at the end of the transaction.
                cur.execute(
                    f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ON COMMIT DROP AS "
                    f"SELECT {', '.join(names)} FROM {source} WITH NO DATA"
                )
                self._staged.add(name)
            else:
                cur.execute(f"TRUNCATE {name}")
            json_at = [i for i, n in enumerate(names) if n in JSON_COLUMNS]
            time_at = [i for i, n in enumerate(names) if n in DATETIME_COLUMNS]
            with cur.copy(f"COPY {name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([_pg_copy_type(source_table.c[n]) for n in names])
                for r in rows:
                    values = [r[n] for n in names]
                    for i in json_at:
                        values[i] = Jsonb(values[i])
                    for i in time_at:   # as UTCDateTime does: aware datetimes only
                        v = values[i]
                        if v is not None and v.tzinfo is None:
                            raise _naive(v)
                    copy.write_row(values)

    def insert_certificates(self, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        self._stage(self.STAGE_CERTS, certificates, CERT_COLUMNS, rows)
        return len(self.conn.exec_driver_sql(self._certs_sql).all())

    def upsert_locations(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._stage(self.STAGE_LOCS, locations, LOCATION_COLUMNS, rows)
            self.conn.exec_driver_sql(self._locs_sql)
