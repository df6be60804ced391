"""Through the real programs: nginx renewed on disk without a reload shows up in `certfleet stale`, then clears."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, Collector

from tests.helpers.install_sites import public_key_of, served_fingerprint

pytestmark = pytest.mark.timeout(300)


def test_stale_nginx_reported_to_the_collector_and_cleared_after_reload(tmp_path: Path, make_site, nginx,
                                                                        tls_ca) -> None:
    site = make_site("www.example.test")
    ng = nginx(site.fullchain, site.key)
    c = Collector(tmp_path / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        agent = Agent(tmp_path / "agent", (
            f'[[store]]\nname = "web"\npaths = ["{site.directory}/*.pem"]\nreload = "nginx"\n'
            f'[reload.nginx]\ncommand = {json.dumps(ng.reload_command)}\n'))
        agent.write_config(hostname="stale-host")
        assert agent.enroll(c, c.token()).code == 0
        r = agent.run_once()
        assert r.code == 0, r.err
        assert c.cli("stale", "--format", "json").json() == []

        renewed = tls_ca.issue(public_key_of(site.key), ("www.example.test",))
        site.fullchain.write_bytes(renewed.cert_pem + renewed.chain_pem())
        r = agent.run_once()
        assert r.code == 0, r.err
        (s,) = c.cli("stale", "--format", "json").json()
        assert s["host"] == "stale-host" and s["path"] == str(site.fullchain)
        assert (s["file_fingerprint"], s["served_fingerprint"]) == (renewed.fingerprint, site.fingerprint)
        assert s["endpoint"] == f"127.0.0.1:{ng.port}" and s["pid"] == ng.proc.pid and s["process"] == "nginx"
        assert s["suggested_reload"] == "nginx" and s["since"]

        r = agent.run_once()                                   # an agent restart: the same since
        assert r.code == 0, r.err
        (again,) = c.cli("stale", "--format", "json").json()
        assert again["since"] == s["since"]

        subprocess.run(ng.reload_command, check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while served_fingerprint(ng.port) != renewed.fingerprint and time.monotonic() < deadline:
            time.sleep(0.05)
        r = agent.run_once()
        assert r.code == 0, r.err
        assert c.cli("stale", "--format", "json").json() == []
    finally:
        c.stop()
