"""Two real collector processes on one PostgreSQL (a schema of the test's own), each with its own
data_dir and only the KEK file copied: started at the same moment they are one collector CA and one
internal CA; an admin identity made through one works at the other; the CRL each serves over plain
HTTP is the same, and `openssl verify -crl_check` against the URL in the certificate passes for a
good certificate and fails once it is revoked through the other collector."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from collector.domain.templates import SubjectNames
from collector.issuers.ca_registry import SharedCAState
from collector.issuers.internal_ca import InternalCA
from collector.pki.keywrap import generate_kek_file, load_key_wrapper
from collector.registry import Registry
from tests.conftest import free_port, need_tools
from tests.e2e.harness import Agent, Collector, run
from tests.helpers.collector_issuers import make_csr, make_template, new_key, utcnow

pytestmark = pytest.mark.postgres

ISSUERS = """
[issuers.internal]
type = "internal_ca"
common_name = "certfleet HA CA"

[templates.web]
issuer = "internal"
key_type = "ec"
curve = "P-256"
validity = "30d"
key_usage = ["digital_signature"]
extended_key_usage = ["serverAuth", "clientAuth"]
allowed_san_patterns = ["*.example.test"]
"""


def two_collectors(tmp: Path, url: str) -> tuple[Collector, Collector, int, int]:
    kek = tmp / "kek.master"
    generate_kek_file(kek)
    crl_ports = free_port(), free_port()
    out = []
    for name, port in zip("ab", crl_ports):
        d = tmp / name
        d.mkdir()
        shutil.copy(kek, d / "kek")       # the only file copied between collectors
        os.chmod(d / "kek", 0o600)
        tables = ISSUERS + (f'\n[keys]\nkek_file = "{d / "kek"}"\n\n[crl]\nlisten = "127.0.0.1:{port}"\n'
                            f'url = "http://127.0.0.1:{crl_ports[0]}"\n')
        out.append(Collector(d, database_url=url, extra_tables=tables))
    return out[0], out[1], crl_ports[0], crl_ports[1]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:   # noqa: S310 - loopback test listener
        assert r.headers["Content-Type"] == "application/pkix-crl"
        return r.read()


def openssl_verify(tmp: Path, root: bytes, chain: list[bytes], leaf: bytes, crl: bytes) -> subprocess.CompletedProcess:
    pem = lambda ders: b"".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)  # noqa: E731
                                for d in ders)
    (tmp / "root.pem").write_bytes(pem([root]))
    (tmp / "chain.pem").write_bytes(pem(chain))
    (tmp / "leaf.pem").write_bytes(pem([leaf]))
    (tmp / "crl.pem").write_bytes(x509.load_der_x509_crl(crl).public_bytes(serialization.Encoding.PEM))
    return subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(tmp / "root.pem"), "-untrusted",
                           str(tmp / "chain.pem"), "-CRLfile", str(tmp / "crl.pem"), str(tmp / "leaf.pem")],
                          capture_output=True, text=True)


def test_two_collector_processes_are_one_ca_and_serve_one_crl(tmp_path: Path, pg_url: str) -> None:
    need_tools("openssl")
    a, b, crl_a, crl_b = two_collectors(tmp_path, pg_url)
    errors: list[BaseException] = []

    def start(c: Collector) -> None:
        try:
            c.start()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=start, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        # one collector CA and one internal CA, keys in the registry wrapped with the one KEK
        status = [run("certfleet-collector", "ca", "status", "--config", str(c.config)) for c in (a, b)]
        assert all(s.code == 0 for s in status), [s.err for s in status]
        roots = [re.search(r"issuer internal: internal CA \(generated.*root SHA-256 ([0-9a-f]{64})", s.out) for s in status]
        assert roots[0] and roots[1] and roots[0].group(1) == roots[1].group(1), [s.out for s in status]
        assert all("wrapped with KEK" in s.out for s in status)
        fps = [run("certfleet-collector", "ca-fingerprint", "--config", str(c.config)).out.strip() for c in (a, b)]
        assert fps[0] == fps[1] and len(fps[0]) == 64
        assert not (a.workdir / "data" / "pki" / "ca.key").exists() and not (b.workdir / "data" / "pki" / "ca.key").exists()

        # an admin identity made through A is accepted by B (one collector CA)
        assert a.init_admin().code == 0
        b_conf = a.admin_config.parent / "via-b.toml"
        b_conf.write_text(a.admin_config.read_text().replace(f":{a.port}", f":{b.port}"))
        env_b = dict(a.env, CERTFLEET_CONFIG=str(b_conf))
        r = a.cli("agents", "list", "--format", "json", env=env_b)
        assert r.code == 0, r.err

        # a certificate from the shared internal CA, reported by an agent enrolled through A
        with Registry.open(pg_url) as reg:
            wrapper = load_key_wrapper({"kek_file": str(a.workdir / "kek")}, tmp_path)
            ca = InternalCA("internal", tmp_path / "none", crl_url=f"http://127.0.0.1:{crl_a}/internal.crl",
                            shared=SharedCAState(reg.issuer_state, wrapper, "internal", "test", tmp_path / "none"))
            names = SubjectNames("svc.example.test", ("svc.example.test",))
            key = new_key("ec", "P-256")
            issued = ca.issue(make_csr(key, dns=["svc.example.test"], cn="svc.example.test"), make_template(),
                              names, utcnow())
        leaf = x509.load_der_x509_certificate(issued.certificate_der)
        cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        url = cdp[0].full_name[0].value
        assert url == f"http://127.0.0.1:{crl_a}/internal.crl"
        site = tmp_path / "site"
        site.mkdir()
        (site / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        agent = Agent(tmp_path / "agent", f'[[store]]\nname = "web"\ntype = "pem"\npaths = ["{site}/*.pem"]\n')
        agent.write_config(hostname="svc-01")
        assert agent.enroll(a, a.token()).code == 0
        assert agent.run_once().code == 0

        crl1 = fetch(url)
        assert fetch(f"http://127.0.0.1:{crl_b}/internal.crl") == crl1, "both collectors serve the same CRL"
        good = openssl_verify(tmp_path, issued.root_der, list(issued.chain_ders), issued.certificate_der, crl1)
        assert good.returncode == 0, good.stdout + good.stderr

        fp = leaf.fingerprint(hashes.SHA256()).hex()
        r = a.cli("revoke", fp, "--reason", "keyCompromise", env=env_b)      # through B
        assert r.code == 0, r.err
        crl2 = fetch(url)                                                     # served by A
        assert crl2 != crl1 and fetch(f"http://127.0.0.1:{crl_b}/internal.crl") == crl2
        bad = openssl_verify(tmp_path, issued.root_der, list(issued.chain_ders), issued.certificate_der, crl2)
        assert bad.returncode != 0 and "revoked" in (bad.stdout + bad.stderr), bad.stdout + bad.stderr
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{crl_a}/nope.crl", timeout=5)  # noqa: S310
    finally:
        for c in (a, b):
            c.stop()
