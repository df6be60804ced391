"""Governance through the real programs: a certificate made the usual way (``openssl req -x509``, which
sets CA:TRUE) and deployed as a service certificate in a store labelled prod is judged by the leaf rules
-- with its key beside it, or served by a TLS endpoint the agent probes -- while a CA certificate that
nothing uses as a service certificate is not."""
from __future__ import annotations

import pathlib
import subprocess
import time

from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector
from tests.helpers.tls_servers import free_port_on, wait_listening

POLICY = """
[global]
min_rsa_bits = 2048

[[scope]]
environment = "prod"
max_validity_days = 398
forbid_self_signed = true
allow_wildcards = false
allowed_san_patterns = ["*.corp.example.test", "corp.example.test"]
"""
LEAF_RULES = {"forbid_self_signed", "max_validity_days", "allow_wildcards", "allowed_san_patterns"}


def req_x509(cert: pathlib.Path, key: pathlib.Path, cn: str, san: str | None) -> None:
    """``openssl req -x509`` as people type it: ten years, no extension file (so CA:TRUE)."""
    args = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "3650", "-subj", f"/CN={cn}"]
    if san:
        args += ["-addext", f"subjectAltName={san}"]
    subprocess.run(args, check=True, capture_output=True)
    bc = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext", "basicConstraints"],
                        check=True, capture_output=True, text=True).stdout
    assert "CA:TRUE" in bc, bc        # the premise: openssl's default marks it a CA


def test_self_signed_ca_flagged_service_certificates_get_the_leaf_rules_in_prod(tmp_path: pathlib.Path) -> None:
    need_tools("openssl")
    keys = tmp_path / "keys"                   # outside the store: the agent does not read these
    prod = tmp_path / "stores" / "prod"
    keys.mkdir()
    prod.mkdir(parents=True)
    # 1. a ten-year self-signed wildcard, deployed as a combined cert+key file (haproxy style)
    req_x509(keys / "wild.crt", keys / "wild.key", "*.shop.example.test", "DNS:*.shop.example.test")
    (prod / "wild.pem").write_bytes((keys / "wild.crt").read_bytes() + (keys / "wild.key").read_bytes())
    # 2. a self-signed service certificate whose file has no key, served on a loopback port
    req_x509(keys / "api.crt", keys / "api.key", "api.shop.example.test", "DNS:api.shop.example.test")
    (prod / "api.pem").write_bytes((keys / "api.crt").read_bytes())
    # 3. a CA certificate nothing uses as a service certificate (no key, no endpoint): not a leaf
    req_x509(keys / "root.crt", keys / "root.key", "Corp Root CA", None)
    (prod / "root.pem").write_bytes((keys / "root.crt").read_bytes())

    port = free_port_on("127.0.0.1")
    server = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}",
                               "-cert", str(keys / "api.crt"), "-key", str(keys / "api.key")],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tmp_path / "collector"
    work.mkdir()
    (work / "policy.toml").write_text(POLICY)
    c = Collector(work, extra_tables='[policy]\nfile = "policy.toml"\nevaluate_interval = "1h"\n')
    try:
        wait_listening("127.0.0.1", port, proc=server)
        c.start()
        assert c.init_admin().code == 0
        stores = (f'[[store]]\nname = "prod"\ntype = "pem"\npaths = ["{prod}/*.pem"]\n'
                  f'labels = {{ environment = "prod" }}\n\n'
                  f'[endpoints]\nlisteners = false\ntargets = ["127.0.0.1:{port}"]\n')
        agent = Agent(tmp_path / "agent", stores)
        agent.write_config(hostname="gov-host")
        assert agent.enroll(c, c.token()).code == 0
        r = agent.run_once()
        assert r.code == 0, r.out + r.err

        found: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 30       # evaluated in the background after the report
        while time.monotonic() < deadline:
            r = c.cli("violations", "list", "--format", "json")
            assert r.code == 0, r.err
            found = {(pathlib.Path(v["path"]).name, v["rule"]) for v in r.json()
                     if v["path"].startswith(str(prod))}
            if len(found) >= 7:
                break
            time.sleep(0.5)
        by_file: dict[str, set[str]] = {}
        for name, rule in found:
            by_file.setdefault(name, set()).add(rule)
        assert by_file.get("wild.pem") == LEAF_RULES, by_file
        assert by_file.get("api.pem") == LEAF_RULES - {"allow_wildcards"}, by_file
        assert "root.pem" not in by_file, by_file

        # the reasons say what a user acts on
        r = c.cli("violations", "list", "--rule", "max_validity_days")
        assert r.code == 0 and "wild.pem" in r.out and "over the maximum of 398" in r.out, r.out + r.err
    finally:
        c.stop()
        server.terminate()
        server.wait(timeout=10)
