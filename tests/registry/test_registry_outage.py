"""The registry on a database that goes away: the test's own PostgreSQL (tests/helpers/own_postgres.py),
stopped and started by its process id under an open registry. Calls during the outage raise
DatabaseUnavailable (the servicers answer UNAVAILABLE), the outage is logged once when it starts
and once when it ends with the count of refused calls, other database errors stay what they are,
and the registry works again once the database is back, without being reopened."""
from __future__ import annotations

import datetime as dt
import logging

import pytest

from collector.errors import DatabaseUnavailable, NotFound
from collector.registry import Registry
from collector.registry.types import CertFilter
from tests.helpers.own_postgres import OwnPostgres
from tests.helpers.registry_certs import T0, header, host, leaf, location, root_ca, store_report


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


def test_a_report_cut_mid_stream_stores_nothing_and_is_stored_whole_when_sent_again(pg: OwnPostgres) -> None:
    registry = Registry.open(pg.url)
    try:
        registry.create_token("f" * 64, T0 + dt.timedelta(hours=1), "test", T0)
        registry.enroll_agent("f" * 64, "agent-1", host("web1.example.com"), "a1", T0 + dt.timedelta(days=30), T0)
        root = root_ca()
        locs = [location(leaf(f"h{i}.example.test", root), f"/etc/ssl/h{i}.pem") for i in range(40)]
        txn = registry.begin_report("agent-1", header("r1", full=True, sequence=1), T0)
        txn.add_upserts(locs[:20])                         # the first chunk is in
        pg.stop()                                          # the database goes away mid-report
        with pytest.raises(DatabaseUnavailable):
            txn.add_upserts(locs[20:])
        txn.abort()                                        # as the servicer does: safe after the cut
        pg.start()
        (agent,) = registry.list_agents()
        assert agent.last_sequence == 0                                 # the cut report is not recorded
        assert list(registry.list_certificates(CertFilter())) == []     # nothing of the cut report
        result = store_report(registry, "agent-1", header("r1", full=True, sequence=1), locs, now=T0)
        assert result.stored and result.locations_upserted == 40        # sent again: stored whole
        assert len(list(registry.list_certificates(CertFilter()))) == 40
    finally:
        registry.close()
