"""The registry contract suite runs every test against SQLite and PostgreSQL.

The ``registry`` fixture is parametrized over both backends. PostgreSQL comes
from CERTFLEET_TEST_PG_URL (default: postgres@127.0.0.1:5432/test); every test
gets a fresh schema there (search_path), which the registry migrates itself.
If PostgreSQL cannot be reached its tests are skipped with the reason, or fail
when CERTFLEET_REQUIRE_POSTGRES=1 (as in CI).
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

try:
    import collector  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy.engine import make_url  # noqa: E402

from collector.registry import Registry  # noqa: E402
from collector.registry.types import HostFacts  # noqa: E402
from registry_certs import T0, host  # noqa: E402

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL = os.environ.get("CERTFLEET_TEST_PG_URL", DEFAULT_PG_URL)
REQUIRE_PG = os.environ.get("CERTFLEET_REQUIRE_POSTGRES") == "1"


def _pg_connect(url: str) -> Any:
    import psycopg

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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (a new SQLite file, or a new PostgreSQL schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        yield from _pg_schema_url(request.getfixturevalue("pg_admin"))


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    reg = Registry.open(db_url)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def make_agent(registry: Registry):  # type: ignore[no-untyped-def]
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
