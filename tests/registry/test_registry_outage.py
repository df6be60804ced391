"""The registry on a database that goes away: the test's own PostgreSQL (tests/helpers/own_postgres.py),
stopped and started by its process id under an open registry. Calls during the outage raise
DatabaseUnavailable (the servicers answer UNAVAILABLE), the outage is logged once when it starts
and once when it ends with the count of refused calls, other database errors stay what they are,
and the registry works again once the database is back, without being reopened."""
from __future__ import annotations

import logging

import pytest

from collector.errors import DatabaseUnavailable, NotFound
from collector.registry import Registry
from tests.helpers.own_postgres import OwnPostgres


@pytest.fixture()
def pg():  # noqa: ANN201
    server = OwnPostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_an_outage_is_unavailable_logged_once_and_over_when_the_database_is_back(
        pg: OwnPostgres, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collector.registry.db")
    registry = Registry.open(pg.url)
    try:
        assert registry.jobs.count() == 0
        open_tx = registry.engine.connect()
        open_tx.begin()
        open_tx.exec_driver_sql("SELECT 1")
        pg.stop()
        for _ in range(5):
            with pytest.raises(DatabaseUnavailable, match="database is unavailable"):
                registry.jobs.count()
        with pytest.raises(DatabaseUnavailable):          # a transaction cut by the server
            open_tx.exec_driver_sql("SELECT 1")
        open_tx.close()
        started = [r for r in caplog.records if "database unavailable" in r.getMessage()]
        assert len(started) == 1 and started[0].levelno == logging.WARNING and not started[0].exc_info

        pg.start()
        assert registry.jobs.count() == 0                 # the same registry works again
        with pytest.raises(NotFound):                     # and its own errors are what they were
            registry.jobs.get("0" * 32)
        ended = [r.getMessage() for r in caplog.records if "available again" in r.getMessage()]
        assert len(ended) == 1 and "6 call(s) were refused" in ended[0], ended
        assert len([r for r in caplog.records if "database unavailable" in r.getMessage()]) == 1
    finally:
        registry.close()
