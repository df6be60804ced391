"""Policy through the real programs: a policy file loaded by the collector, a SHA-1 and an RSA-1024
certificate flagged after the agent's report, an exception granted, roles enforced, via the CLI."""
from __future__ import annotations

import pathlib
import subprocess
import time


from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector
from tests.e2e.test_sync_lifecycle import make_cert, pem_store

POLICY = """
[global]
min_rsa_bits = 2048
forbidden_signature_algorithms = ["sha1", "md5"]
locked = ["min_rsa_bits"]
"""


def openssl_cert(path: pathlib.Path, cn: str, *args: str) -> None:
    subprocess.run(["openssl", "req", "-x509", *args, "-nodes", "-keyout", str(path.with_suffix(".key")),
                    "-out", str(path), "-days", "90", "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}"],
                   check=True, capture_output=True)


def violations(c: Collector, *args: str) -> list[dict]:
    r = c.cli("violations", "list", "--format", "json", *args)
    assert r.code == 0, r.err
    return r.json()


def test_policy_file_violations_and_exceptions(tmp_path: pathlib.Path) -> None:
    need_tools("openssl")
    work = tmp_path / "collector"
    work.mkdir()
    (work / "policy.toml").write_text(POLICY)
    c = Collector(work, extra_tables='[policy]\nfile = "policy.toml"\nevaluate_interval = "1h"\n')
    c.start()
    try:
        assert c.init_admin().code == 0
        assert c.init_admin(name="carol", role="auditor", out=tmp_path / "auditor").code == 0
        auditor = dict(c.env, CERTFLEET_CONFIG=str(tmp_path / "auditor" / "certfleet.toml"))
        stores = tmp_path / "stores"
        stores.mkdir()
        openssl_cert(stores / "sha1.pem", "legacy.example.test", "-sha1", "-newkey", "rsa:2048")
        openssl_cert(stores / "weak.pem", "weak.example.test", "-newkey", "rsa:1024")
        make_cert(stores / "good.pem", "good.example.test")
        agent = Agent(tmp_path / "agent", pem_store(stores))
        agent.write_config(hostname="policy-host")
        assert agent.enroll(c, c.token()).code == 0
        r = agent.run_once()
        assert r.code == 0, r.out + r.err

        r = c.cli("policy", "show")
        assert r.code == 0 and "policy version 1 (file:" in r.out and "min_rsa_bits = 2048" in r.out, r.out + r.err

        deadline = time.monotonic() + 20      # evaluated in the background after the report
        found: dict[str, str] = {}
        while time.monotonic() < deadline:
            found = {pathlib.Path(v["path"]).name: v["rule"] for v in violations(c)}
            if len(found) == 2:
                break
            time.sleep(0.3)
        assert found == {"sha1.pem": "forbidden_signature_algorithms", "weak.pem": "min_rsa_bits"}
        table = c.cli("violations", "list", "--rule", "min_rsa_bits")
        assert table.code == 0 and "1024 bits" in table.out and "1 violation" in table.out, table.out + table.err

        fp = next(v["fingerprint"] for v in violations(c) if v["rule"] == "min_rsa_bits")
        r = c.cli("exceptions", "add", "--rule", "min_rsa_bits", "--fingerprint", fp[:12], "--reason",
                  "old appliance", "--expires", "30d")
        assert r.code == 0 and "waived for certificate" in r.out, r.err
        assert {v["rule"] for v in violations(c)} == {"forbidden_signature_algorithms"}
        assert len(violations(c, "--include-excepted")) == 2
        r = c.cli("exceptions", "list", "--format", "json")
        assert r.code == 0 and [e["reason"] for e in r.json()] == ["old appliance"], r.err

        # roles: an auditor reads but changes nothing; loosening a locked value is refused, naming it
        assert c.cli("violations", "list", env=auditor).code == 0
        (tmp_path / "loose.toml").write_text(POLICY + '\n[[scope]]\nenvironment = "test"\nmin_rsa_bits = 1024\n')
        r = c.cli("policy", "set", str(tmp_path / "loose.toml"), env=auditor)
        assert r.code != 0 and "may not change policy" in r.err, r.err
        r = c.cli("exceptions", "remove", "1", env=auditor)
        assert r.code != 0 and "may not manage exceptions" in r.err, r.err
        r = c.cli("policy", "set", str(tmp_path / "loose.toml"))
        assert r.code != 0 and "loosens locked min_rsa_bits" in r.err, r.err
        r = c.cli("audit", "list", "--format", "json")
        assert r.code == 0, r.err
        assert {"policy.update", "exception.add", "call.refused"} <= {e["action"] for e in r.json()}
    finally:
        c.stop()
