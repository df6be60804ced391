"""Structured logs and the gRPC call metrics, as an operator sees them: a collector with ``[log] format
= "json"`` and an agent service with ``--log-format json`` write one JSON object per line with time,
level, logger, message and the agent id / request id; no secret reaches a line; a refused admin
call is counted by method and code on the collector's /metrics."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, need_tools
from tests.e2e.harness import BIN, Agent, Collector, run
from tests.e2e.test_renewal import COLLECTOR_EXTRA, wait_for
from tests.e2e.test_sync_lifecycle import make_cert, pem_store

pytestmark = pytest.mark.slow


def json_lines(path: pathlib.Path) -> list[dict]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    out = []
    for ln in lines:
        rec = json.loads(ln)                   # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= rec.keys(), rec
        out.append(rec)
    return out


def handled(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.labels["method"], s.labels["code"]): s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == "certfleet_grpc_server_handled_total"}


def test_json_logs_and_call_codes(tmp_path: pathlib.Path) -> None:
    need_tools("openssl")
    port = free_port()
    c = Collector(tmp_path / "collector", extra_tables=COLLECTOR_EXTRA
                  + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n\n[log]\nformat = "json"\n')
    c.start()
    svc = None
    try:
        assert c.init_admin().code == 0
        auditor = tmp_path / "auditor"
        assert run("certfleet-collector", "init-admin", "--config", str(c.config), "--out", str(auditor),
                   "--name", "audrey", "--role", "auditor", env=c.env).code == 0
        stores = tmp_path / "stores"
        (stores / "web").mkdir(parents=True)
        make_cert(stores / "web" / "www.pem", "www.example.test")
        agent = Agent(tmp_path / "agent", pem_store(stores))
        agent.write_config(hostname="json-host")
        token = c.token()
        assert agent.enroll(c, token).code == 0
        log = open(tmp_path / "agent.log", "w")
        svc = subprocess.Popen([str(BIN / "certfleet-agent"), "run", "--config", str(agent.config),
                                "--log-format", "json"], stdout=log, stderr=log)
        agents = wait_for(lambda: [a for a in c.cli("agents", "list", "--format", "json").json()
                                   if a.get("last_report_at") or a.get("locations")], timeout=30,
                          what="the agent's first report")
        agent_id = agents[0]["agent_id"]
        fp = c.cli("certs", "list", "--format", "json").json()[0]["fingerprint_sha256"]

        # an auditor may not renew: refused, and counted by method and code
        r = c.cli("renew", fp[:12], env=dict(os.environ, CERTFLEET_CONFIG=str(auditor / "certfleet.toml")))
        assert r.code != 0
        codes = wait_for(lambda: (lambda h: h if h.get(("/certfleet.v1.AdminService/Renew", "PERMISSION_DENIED"))
                                  else None)(handled(port)), timeout=10, what="the refused call counted")
        assert codes[("/certfleet.v1.AdminService/Renew", "PERMISSION_DENIED")] == 1
        assert codes.get(("/certfleet.v1.AgentService/Report", "OK"), 0) >= 1
        assert codes.get(("/certfleet.v1.Enrollment/Enroll", "OK")) == 1
        assert all(m.startswith("/certfleet.v1.") for m, _ in codes)
    finally:
        if svc is not None:
            svc.terminate()
            svc.wait(10)
            log.close()
        c.stop()

    collector_lines = json_lines(c.workdir / "collector.log")
    agent_lines = json_lines(tmp_path / "agent.log")
    # the collector: a report's line carries the request id of its gRPC call
    report = [r for r in collector_lines if r["message"].startswith(f"report from {agent_id}")]
    assert report and all(len(r.get("request_id", "")) == 16 for r in report), report
    assert all(r.get("agent_id") == agent_id for r in report), report      # the verified caller
    assert {r["level"] for r in collector_lines} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    # the agent: its lines carry its id
    stored = [r for r in agent_lines if "report" in r["message"] and "stored" in r["message"]]
    assert stored and all(r.get("agent_id") == agent_id for r in stored), agent_lines
    # no secret in any line: the enrollment token, the identity keys
    everything = (c.workdir / "collector.log").read_text() + (tmp_path / "agent.log").read_text()
    assert token["token"] not in everything
    assert "PRIVATE KEY" not in everything
