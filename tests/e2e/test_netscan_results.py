"""A network scan's result lists every TLS endpoint it found, whatever source recorded it first: a real
agent service (``certfleet-agent run``) probes its own loopback listeners (``openssl s_server``), then
a network scan over the same ports finds them again. ``netscan start --wait --format json`` prints one
JSON document (progress goes to stderr) and ``netscan show --format json`` has the endpoint list."""
from __future__ import annotations

import json
import pathlib
import subprocess
import time

from tests.conftest import need_tools
from tests.e2e.harness import BIN, Agent, Collector
from tests.e2e.test_sync_lifecycle import make_cert
from tests.helpers.tls_servers import free_port_on, wait_listening

HOST = "127.0.0.1"


def test_scan_lists_endpoints_the_agent_already_probes_as_its_own_listeners(tmp_path: pathlib.Path) -> None:
    need_tools("openssl")
    certs = tmp_path / "certs"
    certs.mkdir()
    ports = [free_port_on(HOST), free_port_on(HOST)]
    servers = []
    c = Collector(tmp_path / "collector", extra_tables='[netscan]\nallowed_ranges = ["127.0.0.0/8"]\n')
    proc = None
    log = open(tmp_path / "agent.log", "w")
    try:
        for i, port in enumerate(ports):
            pem = certs / f"svc{i}.pem"
            make_cert(pem, f"svc{i}.example.test")
            servers.append(subprocess.Popen(
                ["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", str(pem), "-key",
                 str(pem.with_suffix(".key")), "-www", "-quiet"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_listening(HOST, port, proc=servers[-1])
        c.start()
        assert c.init_admin().code == 0
        # the default [endpoints]: listeners = true, so the agent probes these ports as its own listeners
        agent = Agent(tmp_path / "agent", "", endpoints_toml="\n[endpoints]\ntimeout = \"2s\"\n"
                                                          "network_scan_allowed = [\"127.0.0.0/8\"]\n")
        agent.write_config(hostname="listener-host")
        assert agent.enroll(c, c.token()).code == 0
        proc = subprocess.Popen([str(BIN / "certfleet-agent"), "run", "--config", str(agent.config)],
                                stdout=log, stderr=subprocess.STDOUT, env=dict(c.env, PYTHONUNBUFFERED="1"))
        agent_id = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:      # its first report holds both listeners as local_listener endpoints
            r = c.cli("certs", "list", "--host", "listener-host", "--format", "json")
            if r.code == 0:
                eps = {loc["path"]: loc for cert in r.json() for loc in cert["locations"]
                       if loc["store_type"] == "endpoint" and loc["chain_index"] == 0}
                if all(f"{HOST}:{p}" in eps for p in ports):
                    break
            time.sleep(0.5)
        else:
            raise AssertionError("the agent did not report its listeners: " + (tmp_path / "agent.log").read_text()[-3000:])
        agent_id = next(a["agent_id"] for a in c.cli("agents", "list", "--format", "json").json()
                        if a["hostname"] == "listener-host")

        r = c.cli("netscan", "start", "--agent", agent_id, "--targets", HOST, "--ports", ",".join(map(str, ports)),
                  "--rate", "100", "--timeout", "2", "--reason", "listeners too", "--wait", "--wait-timeout", "90",
                  "--format", "json")
        assert r.code == 0, r.out + r.err + (tmp_path / "agent.log").read_text()[-3000:]
        data = json.loads(r.out)              # stdout is one JSON document, nothing else
        assert "probed" in r.err and "TLS" in r.err, r.err          # progress went to stderr
        assert (data["state"], data["probed"], data["tls_found"]) == ("done", 2, 2), data
        assert data["endpoints_in_registry"] == 2, data
        found = {e["endpoint"]: e for e in data["endpoints"]}
        assert set(found) == {f"{HOST}:{p}" for p in ports}, data["endpoints"]
        assert {e["source"] for e in found.values()} == {"local_listener"}     # recorded first by the listener probe
        assert {e["subject"] for e in found.values()} == {"CN=svc0.example.test", "CN=svc1.example.test"}
        assert all(e["fingerprint_sha256"] and e["protocol"].startswith("TLS") for e in found.values())

        shown = c.cli("netscan", "show", data["scan_id"], "--format", "json")
        assert shown.code == 0, shown.err
        assert [e["endpoint"] for e in shown.json()["endpoints"]] == sorted(found)
        text = c.cli("netscan", "show", data["scan_id"][:8])
        assert "In registry:  2 TLS endpoint(s) this scan found" in text.out, text.out
        for p in ports:
            assert f"{HOST}:{p}" in text.out and "recorded first as local_listener" in text.out, text.out
        listed = c.cli("netscan", "list", "--format", "json").json()
        assert [(s["scan_id"], s["endpoints_in_registry"]) for s in listed] == [(data["scan_id"], 2)]
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        for s in servers:
            s.terminate()
            s.wait(5)
        c.stop()
