"""Engines and migrations: how the registry connects to its database.

SQLite (a file) is the default; PostgreSQL via ``postgresql+psycopg://``.
The schema is brought to the newest migration every time the registry opens,
programmatically (no alembic.ini, no dependence on the working directory).

A database that cannot be reached (stopped, restarting, the network cut) is an outage, not a bug:
every engine made here carries an :class:`OutageWatch` that turns a lost or refused connection
into :class:`~collector.errors.DatabaseUnavailable` (the servicers answer UNAVAILABLE, clients
retry) and logs one line when the outage starts and one when it ends, with how many calls it
refused, instead of a traceback per call.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from collector.errors import DatabaseUnavailable, InvalidInput

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
# Serialises migrations of several collectors starting at once on one PostgreSQL.
_PG_MIGRATION_LOCK = 0x63667267  # "cfrg"

# Execution option that makes a connection's transactions writers. On SQLite a
# writer starts with BEGIN IMMEDIATE, so it waits (busy timeout) for the write
# lock up front instead of failing half-way when upgrading a read lock.
WRITE = {"certfleet_write": True}


class Connections:
    """``_write()`` and ``_read()`` for the stores, which each hold an ``engine``."""

    engine: Engine

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A writer connection (:data:`WRITE`) in a transaction, committed when the block ends."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn


def parse_url(url: str) -> URL:
    try:
        u = make_url(url)
    except ArgumentError:
        raise InvalidInput("the database URL is not valid (expected sqlite:///path or postgresql+psycopg://...)") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidInput(f"unsupported database {u.get_backend_name()!r}; use sqlite or postgresql")
    return u


UNAVAILABLE_MESSAGE = "the collector's database is unavailable; nothing was changed, retry in a few seconds"


class OutageWatch:
    """Whether an engine's database is reachable, learnt from its connections.

    A connection that cannot be made, or one the server cut, starts an outage: logged once, and
    that failure and every later one raise :class:`DatabaseUnavailable`. The next connection made
    ends it: logged once with the outage's length and how many calls it refused. Other database
    errors (constraints, a bad statement) pass through as they are."""

    def __init__(self, engine: Engine, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.refused = 0            # calls refused during the current outage
        self.outages = 0            # outages seen since the engine was made
        event.listen(engine, "handle_error", self._on_error)
        event.listen(engine.pool, "connect", self._on_connect)

    @property
    def down(self) -> bool:
        return self.down_since is not None

    @staticmethod
    def is_outage(ctx: Any) -> bool:
        """A connection cut by the server, or one that could not be made (no statement ran)."""
        if ctx.is_disconnect:
            return True
        return ctx.connection is None and ctx.statement is None

    def _on_error(self, ctx: Any) -> None:
        if ctx.is_pre_ping or not self.is_outage(ctx):
            return      # a stale pooled connection is replaced by the pool itself; other errors are not outages
        reason = str(ctx.original_exception).strip().splitlines()[0][:200] if str(ctx.original_exception) else \
            type(ctx.original_exception).__name__
        with self._lock:
            self.refused += 1
            if self.down_since is None:
                self.down_since = self.clock()
                self.outages += 1
                log.warning("database unavailable: %s; calls are answered UNAVAILABLE until it is back", reason)
        raise DatabaseUnavailable(UNAVAILABLE_MESSAGE) from ctx.original_exception

    def _on_connect(self, _dbapi_conn: Any, _record: Any) -> None:
        with self._lock:
            if self.down_since is None:
                return
            lasted, refused = self.clock() - self.down_since, self.refused
            self.down_since, self.refused = None, 0
        log.warning("database available again after %.1f s; %d call(s) were refused during the outage",
                    lasted, refused)


def create_registry_engine(url: str, **kwargs: Any) -> Engine:
    u = parse_url(url)
    if u.get_backend_name() == "sqlite":
        engine = _sqlite_engine(u, **kwargs)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        engine = create_engine(u, **kwargs)
    OutageWatch(engine)     # held by the engine's event listeners
    return engine


def _sqlite_engine(u: URL, **kwargs: Any) -> Engine:
    memory = u.database in (None, "", ":memory:")
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    if memory:  # one shared connection; for tests and tools, not for concurrent use
        kwargs.setdefault("poolclass", StaticPool)
    engine = create_engine(u, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None   # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")   # durable enough with WAL, much faster
            cur.execute("PRAGMA cache_size=-65536")    # 64 MiB page cache (default 2 MiB)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("certfleet_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest)."""
    cfg = alembic_config()
    with engine.connect().execution_options(**WRITE) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if conn.dialect.name == "postgresql":
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
