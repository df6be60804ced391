"""The registry's backends for tests: every store test runs once per backend, from one definition.

A test that takes ``registry`` (a migrated ``Registry``) or ``db_url`` (the URL of an empty
database) is parametrized over :data:`BACKENDS`: a new SQLite file, and a new schema on the
PostgreSQL at CERTFLEET_TEST_PG_URL (default: postgres@127.0.0.1:5432/test; search_path set to
it, and the registry migrates it itself). This is the registry's contract suite: the stores have
one implementation in SQLAlchemy Core with per-dialect paths (bulk writes, row locks, ON CONFLICT),
and each store test holds for both. A store built alone (``OwnerStore(registry.engine)``) is on
the same backend.

If PostgreSQL cannot be reached its tests are skipped with the reason, or fail when
CERTFLEET_REQUIRE_POSTGRES=1 (as in CI).

Use the fixtures by importing them into a conftest (tests/registry/conftest.py does).
"""
from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from collector.registry import Registry
from collector.registry.types import HostFacts
from tests.helpers.registry_certs import T0, host

#: the databases every store test runs on
BACKENDS = ("sqlite", "postgresql")
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL = os.environ.get("CERTFLEET_TEST_PG_URL", DEFAULT_PG_URL)
REQUIRE_PG = os.environ.get("CERTFLEET_REQUIRE_POSTGRES") == "1"


def _pg_connect(url: str) -> Any:
    import psycopg  # a driver only the PostgreSQL backend needs

    u = make_url(url)
    return psycopg.connect(
        host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username, password=u.password,
        dbname=u.database, connect_timeout=5, autocommit=True,
    )


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Any]:
    """An autocommit connection to the test database, or skip/fail if there is none."""
    try:
        conn = _pg_connect(PG_URL)
    except Exception as e:  # noqa: BLE001
        safe = make_url(PG_URL).render_as_string(hide_password=True)
        msg = f"PostgreSQL at {safe} is unreachable: {type(e).__name__}: {e}"
        if REQUIRE_PG:
            pytest.fail(msg + " (CERTFLEET_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(msg + " (set CERTFLEET_REQUIRE_POSTGRES=1 to make this a failure)")
    yield conn
    conn.close()


def _pg_schema_url(pg_admin: Any) -> Iterator[str]:
    schema = f"certfleet_t_{uuid.uuid4().hex[:12]}"
    pg_admin.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(PG_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        pg_admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=[pytest.param(b, marks=pytest.mark.postgres) if b == "postgresql" else b for b in BACKENDS])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database on each backend (a new SQLite file, or a new PostgreSQL schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        yield from _pg_schema_url(request.getfixturevalue("pg_admin"))


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    """A migrated registry on each backend."""
    reg = Registry.open(db_url)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def make_agent(registry: Registry) -> Callable[..., HostFacts]:
    """Enroll an agent through a fresh token: make_agent("a1", "web1.example.com")."""
    counter = iter(range(10**6))

    def make(agent_id: str = "agent-1", hostname: str = "web1.example.com", serial: str = "a1b2",
             now: Any = T0) -> HostFacts:
        token_hash = f"{next(counter):064x}"
        h = host(hostname)
        registry.create_token(token_hash, now + dt.timedelta(hours=1), "test", now)
        registry.enroll_agent(token_hash, agent_id, h, serial, now + dt.timedelta(days=30), now)
        return h

    return make
