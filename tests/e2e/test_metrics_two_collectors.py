"""Two collectors on one PostgreSQL database, as in production behind a load balancer: their database
gauges agree (so max() over them is the fleet), their counters are their own (so sum() over them is
the fleet), as README "Metrics and alerts" says."""
from __future__ import annotations

import pathlib
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.pki.keywrap import generate_kek_file
from tests.conftest import free_port, need_tools
from tests.e2e.harness import Agent, Collector
from tests.e2e.test_renewal import wait_for
from tests.e2e.test_sync_lifecycle import make_cert, pem_store
from tests.helpers.registry_backends import _pg_schema_url, pg_admin  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.fixture()
def pg_url(pg_admin):  # noqa: ANN001, ANN201, F811
    yield from _pg_schema_url(pg_admin)


def test_two_collectors_one_database(tmp_path: pathlib.Path, pg_url: str) -> None:
    need_tools("openssl")
    ports = [free_port(), free_port()]
    kek = tmp_path / "kek"                           # collectors on one database share the key-encryption key
    generate_kek_file(kek)
    collectors = [Collector(tmp_path / f"c{i}", database_url=pg_url,
                            extra_tables=f'[metrics]\nlisten = "127.0.0.1:{ports[i]}"\nrefresh = "1s"\n'
                                         f'[keys]\nkek_file = "{kek}"\n')
                  for i in range(2)]
    for c in collectors:
        c.start()
    try:
        c1 = collectors[0]
        assert c1.init_admin().code == 0
        stores = tmp_path / "stores"
        stores.mkdir()
        make_cert(stores / "a.pem", "a.example.test", days=5)
        make_cert(stores / "b.pem", "b.example.test", days=60)
        agent = Agent(tmp_path / "agent", pem_store(stores))
        agent.write_config(hostname="ha-host")
        assert agent.enroll(c1, c1.token()).code == 0
        r = agent.run_once()                          # reports to the first collector only
        assert r.code == 0, r.err

        def both() -> list[dict] | None:
            got = [scrape(p) for p in ports]
            ok = all(g.get(("certfleet_certificates", (("window", "7d"),))) == 1 for g in got)
            return got if ok else None

        one, two = wait_for(both, timeout=30, what="both collectors to see the report")
        for key in [k for k in one if k[0] in ("certfleet_certificates", "certfleet_locations", "certfleet_jobs",
                                                "certfleet_agents")]:
            assert one[key] == two[key], key                      # the database's view: the same on both
        assert one[("certfleet_certificates", (("window", "90d"),))] == 1
        assert one[("certfleet_agents", (("status", "enrolled"),))] == 1
        stored = ("certfleet_reports_ingested_total", (("outcome", "stored"),))
        assert (one[stored], two[stored]) == (1, 0)               # this process's work: the first one's
        enrolled = [k for k in two if k[0] == "certfleet_grpc_server_handled_total" and "Enroll" in dict(k[1])["method"]]
        assert enrolled == []                                     # nobody enrolled through the second
    finally:
        for c in collectors:
            c.stop()
