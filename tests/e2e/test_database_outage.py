"""A PostgreSQL outage under a running collector, as an operator would live it: the test's own
PostgreSQL (tests/helpers/own_postgres.py: initdb in a temporary directory, its own loopback port,
stopped and started by its process id; the machine's PostgreSQL is never touched), the real
collector on it, a real agent reporting a directory of PEM files that nginx serves, and the CLI.

While the database is down: the CLI says the collector's database is unavailable (exit 1, nothing
on standard output), agents' reports are refused as UNAVAILABLE and retried. After it is back:
what changed during the outage reaches the registry, a renewal whose result arrived during the
outage ends ``verified`` without the two-minute resend, and the collector's log has one line for
the outage's start and one for its end, not a traceback per call.
"""
from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from tests.e2e.harness import Agent, Collector
from tests.e2e.test_renewal import COLLECTOR_EXTRA, Service, agent_config, old_site, registry_fingerprint, wait_for
from tests.helpers.install_sites import Nginx, nginx_binary, served_fingerprint
from tests.helpers.own_postgres import OwnPostgres



@pytest.fixture()
def world(tmp_path: pathlib.Path):
    binary = nginx_binary()
    if binary is None:
        pytest.skip("needs nginx (packaging/dev/setup.sh installs it)")
    pg = OwnPostgres()
    made: list = []
    try:
        pg.start()
        cert, key = old_site(tmp_path / "site")
        nginx = Nginx(binary, tmp_path / "nginx", cert, key)
        made.append(nginx)
        c = Collector(tmp_path / "collector", database_url=pg.url, extra_tables=COLLECTOR_EXTRA)
        c.start()
        made.append(c)
        assert c.init_admin().code == 0
        c.authorize("*.example.test")          # since issue 11 only granted names are issued

        def make_agent(reload_command: list[str]) -> Service:
            agent = Agent(tmp_path / "agent", agent_config(tmp_path / "site", nginx, reload_command))
            agent.write_config(hostname="web-01")
            text = agent.config.read_text().replace("[agent]\n", '[agent]\nscan_interval = "2s"\n', 1)
            agent.config.write_text(text)
            assert agent.enroll(c, c.token()).code == 0
            svc = Service(agent)
            made.append(svc)
            return svc

        yield pg, c, nginx, make_agent, tmp_path / "site"
    finally:
        for thing in reversed(made):
            thing.stop()
        pg.close()


def _log(c: Collector) -> str:
    return (c.workdir / "collector.log").read_text()


def _outage_lines(c: Collector) -> tuple[list[str], list[str]]:
    lines = _log(c).splitlines()
    return ([x for x in lines if "database unavailable:" in x],
            [x for x in lines if "database available again" in x])


def _add_site_cert(site: pathlib.Path, name: str) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(site / f"{name}.key"), "-out", str(site / f"{name}.crt.pem"), "-days", "30",
         "-subj", f"/CN={name}.example.test"], check=True, capture_output=True)
    (site / f"{name}.key").unlink()        # the store reads *.pem: the certificate alone


def _subjects(c: Collector) -> set[str]:
    r = c.cli("certs", "list", "--host", "web-01", "--format", "json")
    return {x["subject"] for x in r.json()} if r.code == 0 else set()


def test_reports_and_cli_during_a_database_outage(world) -> None:
    pg, c, nginx, make_agent, site = world
    make_agent(nginx.reload_command)
    wait_for(lambda: registry_fingerprint(c), what="the first report")

    pg.stop()                                               # the database goes away
    r = c.cli("certs", "list", "--format", "json")
    assert r.code == 1 and r.out == "", (r.code, r.out[:200])
    assert r.err.startswith("certfleet: the collector's database is unavailable, retry"), r.err
    _add_site_cert(site, "during-outage")                   # the agent's next reports are refused
    wait_for(lambda: _outage_lines(c)[0], timeout=30, what="the outage in the collector's log")
    subprocess.run(["sleep", "6"], check=True)              # several refused reports and command-stream looks

    pg.start()                                              # back: what changed meanwhile arrives
    wait_for(lambda: "CN=during-outage.example.test" in _subjects(c), timeout=90,
             what="the certificate added during the outage to reach the registry")
    started, ended = wait_for(lambda: (lambda s, e: (s, e) if e else None)(*_outage_lines(c)), timeout=30,
                              what="the log line for the outage's end")
    assert len(started) == 1 and len(ended) == 1, started + ended
    assert "call(s) were refused" in ended[0]
    assert "Traceback" not in _log(c), _log(c)[-3000:]
    assert "internal error" not in _log(c)


def test_a_renewal_whose_result_arrives_during_the_outage_completes(world) -> None:
    pg, c, nginx, make_agent, site = world
    marker = site.parent / "reloading"
    # the reload takes a few seconds: long enough to stop the database while the agent installs
    slow_reload = ["/bin/sh", "-c", f'touch "{marker}"; sleep 5; exec "$@"', "reload", *nginx.reload_command]
    make_agent(slow_reload)
    old = wait_for(lambda: registry_fingerprint(c), what="the first report")
    r = c.cli("renew", old[:12])
    assert r.code == 0, r.err
    job_id = r.out.split()[1]
    wait_for(marker.exists, timeout=60, what="the agent to start the reload")
    pg.stop()                                               # the install's result arrives while it is down
    r = c.cli("jobs", "show", job_id, "--format", "json")
    assert r.code == 1 and r.out == "" and "database is unavailable" in r.err, r
    subprocess.run(["sleep", "10"], check=True)             # the agent reloaded, verified and reported meanwhile

    pg.start()
    job = wait_for(lambda: (lambda j: j if j["state"] in ("verified", "failed", "rolled_back", "stuck") else None)(
        json.loads(c.cli("jobs", "show", job_id, "--format", "json").out or "{}") or {"state": ""}),
        timeout=60, what="the job to finish (well before the 2-minute resend)")
    assert job["state"] == "verified", job
    assert served_fingerprint(nginx.port) == job["new_fingerprint"]
    assert "Traceback" not in _log(c), _log(c)[-3000:]
