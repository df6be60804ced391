"""Renewal end to end, as a user runs it: nginx on loopback serving files an agent manages,
`certfleet renew --wait` through the collector's internal CA, the new certificate seen in a
real handshake; a failing reload rolled back with nginx still serving the old certificate;
a collector restart in the middle of a job.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import time

import pytest

from tests.conftest import need_tools
from tests.e2e.harness import BIN, Agent, Collector
from tests.helpers.install_sites import Nginx, nginx_binary, served_fingerprint

COLLECTOR_EXTRA = """
[issuers.internal]
type = "internal_ca"
common_name = "certfleet e2e CA"

[templates.web]
issuer = "internal"
key_type = "ec"
curve = "P-256"
validity = "90d"
key_usage = ["digital_signature"]
extended_key_usage = ["serverAuth"]
allowed_san_patterns = ["*.example.test"]

[renewal]
default_template = "web"
"""


def old_site(d: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    d.mkdir(parents=True)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "20", "-subj", "/CN=www.example.test",
         "-addext", "subjectAltName=DNS:www.example.test"],
        check=True, capture_output=True,
    )
    return cert, key


class Service:
    """`certfleet-agent run` as the service, in the background."""

    def __init__(self, agent: Agent) -> None:
        self.log = open(agent.workdir / "agent.log", "a")
        self.proc = subprocess.Popen([str(BIN / "certfleet-agent"), "run", "--config", str(agent.config)],
                                     stdout=self.log, stderr=self.log)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def agent_config(site: pathlib.Path, nginx: Nginx, reload_command: list[str]) -> str:
    return (
        "[[store]]\n"
        'name = "web"\n'
        'type = "pem"\n'
        f'paths = ["{site}/*.pem"]\n'
        'reload = "nginx"\n'
        f'verify = [{{ host = "127.0.0.1", port = {nginx.port}, sni = "www.example.test" }}]\n'
        'verify_timeout = "10s"\n\n'
        "[reload.nginx]\n"
        f"command = {json.dumps(reload_command)}\n"
    )


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def world(tmp_path: pathlib.Path):
    need_tools("openssl")
    binary = nginx_binary()
    if binary is None:
        pytest.skip("needs nginx (packaging/dev/setup.sh installs it)")
    cert, key = old_site(tmp_path / "site")
    nginx = Nginx(binary, tmp_path / "nginx", cert, key)
    c = Collector(tmp_path / "collector", extra_tables=COLLECTOR_EXTRA)
    c.start()
    assert c.init_admin().code == 0
    c.authorize("*.example.test")
    made = []

    def make_agent(reload_command: list[str] | None = None) -> tuple[Agent, Service]:
        agent = Agent(tmp_path / "agent", agent_config(tmp_path / "site", nginx, reload_command or nginx.reload_command))
        agent.write_config(hostname="web-01")
        text = agent.config.read_text().replace("[agent]\n", '[agent]\nscan_interval = "2s"\n', 1)
        agent.config.write_text(text)
        assert agent.enroll(c, c.token()).code == 0
        svc = Service(agent)
        made.append(svc)
        return agent, svc

    yield c, nginx, make_agent, cert
    for svc in made:
        svc.stop()
    c.stop()
    nginx.stop()


def registry_fingerprint(c: Collector, host: str = "web-01") -> str:
    r = c.cli("certs", "list", "--host", host, "--format", "json")
    certs = [x for x in r.json() if any(loc["path"].endswith("cert.pem") for loc in x["locations"])] if r.code == 0 else []
    return certs[0]["fingerprint_sha256"] if certs else ""


def test_renew_through_internal_ca_is_served_by_nginx(world) -> None:
    c, nginx, make_agent, cert = world
    make_agent()
    old = wait_for(lambda: registry_fingerprint(c), what="the first report")
    assert served_fingerprint(nginx.port) == old

    r = c.cli("renew", old[:12], "--wait", "--timeout", "60")
    assert r.code == 0, r.out + r.err
    assert "verified" in r.out
    job_id = r.out.split()[1]
    job = c.cli("jobs", "show", job_id, "--format", "json").json()
    assert job["state"] == "verified"
    new = job["new_fingerprint"]
    assert new and new != old
    assert served_fingerprint(nginx.port) == new          # a real handshake sees the new certificate
    states = [e["to"] for e in job["events"]]
    assert states == ["requested", "key_pending", "csr_received", "issued", "installing", "verified"]
    assert any(s["step"] == "reload" and s["ok"] for s in job["result"]["steps"])
    # the registry catches up with what is on disk: the new certificate, from the internal CA
    wait_for(lambda: registry_fingerprint(c) == new, what="the registry to see the new certificate")
    shown = c.cli("certs", "show", new[:12], "--format", "json").json()
    assert "certfleet e2e CA" in shown["issuer"]
    listed = c.cli("jobs", "list")
    assert listed.code == 0 and job_id[:8] in listed.out and "verified" in listed.out
    # the old certificate is revoked at the issuer that issued it: not ours, so refused clearly
    r = c.cli("revoke", old[:12], "--reason", "superseded")
    assert r.code != 0 and "no configured issuer accepted" in r.err
    r = c.cli("revoke", new[:12], "--reason", "keyCompromise")
    assert r.code == 0 and "through issuer internal" in r.out, r.err
    r = c.cli("revoke", new[:12], "--reason", "not-a-reason")
    assert r.code != 0 and "keyCompromise" in r.err


def test_failed_reload_rolls_back_and_nginx_keeps_serving(world) -> None:
    c, nginx, make_agent, cert = world
    make_agent(reload_command=["/bin/sh", "-c", "echo reload refused >&2; exit 3"])
    old = wait_for(lambda: registry_fingerprint(c), what="the first report")
    r = c.cli("renew", old[:12], "--wait", "--timeout", "60")
    assert r.code == 1, r.out + r.err
    assert "rolled_back" in r.out
    job_id = r.out.split()[1]
    job = c.cli("jobs", "show", job_id, "--format", "json").json()
    assert job["state"] == "rolled_back"
    assert "reload" in job["events"][-1]["reason"]
    assert served_fingerprint(nginx.port) == old
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert registry_fingerprint(c) == old


def test_collector_restart_mid_job_loses_nothing(world) -> None:
    c, nginx, make_agent, cert = world
    agent, svc = make_agent()
    old = wait_for(lambda: registry_fingerprint(c), what="the first report")
    svc.stop()                                            # the agent is offline: the job waits in the registry
    r = c.cli("renew", old[:12])
    assert r.code == 0, r.err
    job_id = r.out.split()[1]
    c.stop()
    c.start()                                             # a restart in the middle of the job
    assert c.cli("jobs", "show", job_id, "--format", "json").json()["state"] == "requested"
    back = Service(agent)                                 # the agent comes back and the job runs
    try:
        job = wait_for(lambda: (lambda j: j if j["state"] in ("verified", "failed", "rolled_back") else None)(
            c.cli("jobs", "show", job_id, "--format", "json").json()), timeout=60, what="the job to finish")
        assert job["state"] == "verified", job
        assert served_fingerprint(nginx.port) == job["new_fingerprint"]
    finally:
        back.stop()


def keytool_fingerprints(store: pathlib.Path, password_file: pathlib.Path) -> str:
    out = subprocess.run(["keytool", "-list", "-v", "-keystore", str(store), "-storepass:file", str(password_file)],
                         capture_output=True, text=True, check=True).stdout
    return out.replace(":", "").lower()


def test_renew_jks_entry_in_place_read_back_with_keytool(tmp_path: pathlib.Path) -> None:
    need_tools("keytool")
    ks_dir = tmp_path / "ks"
    ks_dir.mkdir()
    store, pw = ks_dir / "app.jks", tmp_path / "ks.pass"
    pw.write_text("s3cret$@pass\n")
    pw.chmod(0o600)
    for alias, cn in (("tomcat", "app.example.test"), ("other", "other.example.test")):
        subprocess.run(["keytool", "-genkeypair", "-keystore", str(store), "-storetype", "JKS", "-storepass:file", str(pw),
                        "-keypass:file", str(pw), "-alias", alias, "-keyalg", "EC", "-groupname", "secp256r1",
                        "-dname", f"CN={cn}", "-ext", f"SAN=dns:{cn}", "-validity", "30"],
                       check=True, capture_output=True)
    c = Collector(tmp_path / "collector", extra_tables=COLLECTOR_EXTRA)
    c.start()
    try:
        assert c.init_admin().code == 0
        c.authorize("*.example.test")
        agent = Agent(tmp_path / "agent", f'[[store]]\nname = "app"\ntype = "jks"\npaths = ["{store}"]\n'
                                          f'password_file = "{pw}"\n')
        agent.write_config(hostname="app-01")
        agent.config.write_text(agent.config.read_text().replace("[agent]\n", '[agent]\nscan_interval = "2s"\n', 1))
        assert agent.enroll(c, c.token()).code == 0
        svc = Service(agent)
        try:
            def tomcat_fp() -> str:
                r = c.cli("certs", "list", "--host", "app-01", "--format", "json")
                hits = [x["fingerprint_sha256"] for x in (r.json() if r.code == 0 else [])
                        if any(loc["alias"] == "tomcat" and loc["chain_index"] == 0 for loc in x["locations"])]
                return hits[0] if hits else ""

            old = wait_for(tomcat_fp, what="the keystore in the registry")
            before = keytool_fingerprints(store, pw)
            assert old in before
            r = c.cli("renew", old[:12], "--wait", "--timeout", "60")
            assert r.code == 0, r.out + r.err
            job = c.cli("jobs", "show", r.out.split()[1], "--format", "json").json()
            after = keytool_fingerprints(store, pw)      # keytool reads the store with the same password
            assert job["new_fingerprint"] in after and old not in after
            other = [line for line in before.splitlines() if line.strip().startswith("sha256")]
            assert all(line in after for line in other if old not in line)   # the other entry is untouched
            assert "alias name tomcat" in after and "alias name other" in after   # (colons stripped)
        finally:
            svc.stop()
    finally:
        c.stop()
