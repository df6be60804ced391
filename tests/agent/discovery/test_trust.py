"""Trust stores: the system's /etc/ssl/certs and a JVM's cacerts are inventoried as trust anchors, apart."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.scan.trust import TrustStores, entry_role, is_hash_link_name, is_jvm_cacerts
from agent.inventory import SERVICE, TRUST_ANCHOR
from agent.cli.localreport import render_scan
from agent.scan.scanner import Scanner
from agent.transport.wire import location_out

SYSTEM_CERTS = Path("/etc/ssl/certs")
SCAN_LIMIT_SECONDS = 5.0       # measured: about 0.25 s for 146 files / 432 certificates on the development machine


def _cfg(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(f'[agent]\ndata_dir = "{directory / "data"}"\nhostname = "h"\n' + text)
    path.chmod(0o600)
    return path


def _scan(config):  # noqa: ANN001, ANN202
    scanner = Scanner(config)
    scans = list(scanner.scan())
    return scanner, scans, [e for fs in scans for e in fs.entries], [p for fs in scans for p in fs.problems]


@pytest.mark.skipif(not (SYSTEM_CERTS / "ca-certificates.crt").is_file(), reason="needs Debian's ca-certificates")
def test_system_trust_store_is_scanned_fast_as_trust_anchors_each_file_once(tmp_path: Path) -> None:
    config = load_config(_cfg(tmp_path, f'[[store]]\nname = "system"\npaths = ["{SYSTEM_CERTS}/**"]\n'))
    t0 = time.perf_counter()
    scanner, scans, entries, _problems = _scan(config)
    seconds = time.perf_counter() - t0
    assert entries and {e.role for e in entries} == {TRUST_ANCHOR}
    assert seconds < SCAN_LIMIT_SECONDS, f"{seconds:.2f} s"

    # hundreds of names (a .pem link and a hash link per certificate) lead to far fewer files: each is read once
    names = [p for p in SYSTEM_CERTS.rglob("*") if p.is_file()]
    targets = {(os.stat(p).st_dev, os.stat(p).st_ino) for p in names}
    assert scanner.counters.files_read == len(targets) < len(names)
    paths = {fs.path for fs in scans}
    # the readable name is kept, not the hash link pointing at the same file
    named_targets = {os.path.realpath(p) for p in names if not is_hash_link_name(p.name)}
    assert not [p for p in paths if is_hash_link_name(os.path.basename(p)) and os.path.realpath(p) in named_targets]
    assert str(SYSTEM_CERTS / "ca-certificates.crt") in paths

    # a rescan reuses the files and keeps their role; the wire carries it
    again = [e for fs in scanner.scan() for e in fs.entries]
    assert scanner.counters.files_reused == len(targets) and {e.role for e in again} == {TRUST_ANCHOR}
    assert location_out(again[0]).role == "trust_anchor"


def _write_pem(path: Path, *ders: bytes) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM) for d in ders))
    return path


def test_recognised_trust_paths_keep_service_certificates_apart(tmp_path: Path, make_site, tls_ca) -> None:
    site = make_site("www.example.test")
    trust_dir = tmp_path / "trust"
    _write_pem(trust_dir / "roots.pem", *site.issued.chain_ders)     # intermediate + root: CA certificates
    _write_pem(trust_dir / "snakeoil.pem", site.issued.cert_der)      # a server's own certificate kept there
    service_dir = tmp_path / "service"
    _write_pem(service_dir / "roots.pem", *site.issued.chain_ders)
    config = load_config(_cfg(tmp_path, (
        f'[discovery]\ntrust_store_paths = ["{trust_dir}/*.pem"]\n'
        f'[[store]]\nname = "trust"\npaths = ["{trust_dir}/*.pem"]\n'
        f'[[store]]\nname = "service"\npaths = ["{service_dir}/*.pem"]\n')))
    _, _, entries, problems = _scan(config)
    roles = {(Path(e.key.path).parent.name, Path(e.key.path).name, e.key.chain_index): e.role for e in entries}
    assert not problems
    assert roles[("trust", "roots.pem", 0)] == roles[("trust", "roots.pem", 1)] == TRUST_ANCHOR
    assert roles[("trust", "snakeoil.pem", 0)] == SERVICE               # CA:FALSE: not an anchor
    assert roles[("service", "roots.pem", 0)] == SERVICE                # not a trust path, no role: service


def test_store_role_is_taken_as_configured(tmp_path: Path, make_site) -> None:
    site = make_site("www.example.test")
    pem = _write_pem(tmp_path / "app" / "truststore.pem", site.issued.cert_der, *site.issued.chain_ders)
    config = load_config(_cfg(tmp_path, f'[[store]]\nname = "app-trust"\npaths = ["{pem}"]\nrole = "trust_anchor"\n'))
    assert {e.role for e in _scan(config)[2]} == {TRUST_ANCHOR}          # every entry, the leaf too
    with pytest.raises(ConfigError, match="role must be"):
        load_config(_cfg(tmp_path / "bad", f'[[store]]\nname = "x"\npaths = ["{pem}"]\nrole = "anchor"\n'))


@pytest.mark.skipif(not (SYSTEM_CERTS / "ca-certificates.crt").is_file(), reason="needs Debian's ca-certificates")
def test_explicit_service_role_overrides_a_trust_path(tmp_path: Path) -> None:
    bundle = SYSTEM_CERTS / "ca-certificates.crt"
    config = load_config(_cfg(tmp_path, f'[[store]]\nname = "x"\npaths = ["{bundle}"]\nrole = "service"\n'))
    assert {e.role for e in _scan(config)[2]} == {SERVICE}


def test_jvm_cacerts_opens_with_the_jdk_default_password_never_logged(tmp_path: Path, real_tools, tls_ca,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    security = tmp_path / "jdk" / "lib" / "security"
    security.mkdir(parents=True)
    root = tmp_path / "root.pem"
    root.write_bytes(tls_ca.root_pem)
    for name, password in (("cacerts", "changeit"), ("other-cacerts-dir/cacerts", "s3cret-pass")):
        target = security / name
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([real_tools["keytool"], "-importcert", "-noprompt", "-alias", "certfleet-test-root", "-file",
                        str(root), "-keystore", str(target), "-storepass", password, "-storetype", "JKS"],
                       check=True, capture_output=True, timeout=120)
    assert is_jvm_cacerts(str(security / "cacerts")) and not is_jvm_cacerts(str(security / "other-cacerts-dir/cacerts"))
    config = load_config(_cfg(tmp_path, f'[[store]]\nname = "jdk"\ntype = "jks"\npaths = ["{tmp_path}/jdk/**/cacerts"]\n'))
    caplog.set_level(logging.DEBUG)
    _, scans, entries, problems = _scan(config)
    by_path = {fs.path: fs for fs in scans}
    jdk = by_path[str(security / "cacerts")]
    assert not jdk.problems, jdk.problems                              # integrity checked with "changeit"
    assert [(e.key.alias, e.role) for e in jdk.entries] == [("certfleet-test-root", TRUST_ANCHOR)]
    other = by_path[str(security / "other-cacerts-dir" / "cacerts")]
    assert [p.reason for p in other.problems] == ["no_password"]       # not a JVM's cacerts: no default
    assert "changeit" not in caplog.text and all("changeit" not in p.message for p in problems)


def test_trust_store_recognition_rules() -> None:
    t = TrustStores(["/opt/app/trust/**"])
    assert t.is_trust_path("/etc/ssl/certs/ca-certificates.crt")
    assert t.is_trust_path("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")
    assert t.is_trust_path("/etc/pki/tls/certs/ca-bundle.crt")
    assert not t.is_trust_path("/etc/pki/tls/certs/localhost.crt")      # service certificates live there too
    assert t.is_trust_path("/usr/lib/jvm/java-17-openjdk-amd64/lib/security/cacerts")
    assert t.is_trust_path("/opt/app/trust/sub/roots.pem") and not t.is_trust_path("/opt/app/other.pem")
    assert is_hash_link_name("5a4d6896.0") and is_hash_link_name("5a4d6896.r1") and not is_hash_link_name("a.pem")


def test_entry_role_for_keys_and_explicit_roles(make_site) -> None:
    from agent.inventory import CERTIFICATE, NO_KEY, FoundCert, LocationKey

    site = make_site("k.example.test")
    leaf = FoundCert(LocationKey("pem", "/etc/ssl/certs/x.pem", "", 0), site.issued.cert_der, site.fingerprint,
                     False, False, NO_KEY, CERTIFICATE, "root", "root", 0o644, 0.0)
    root = FoundCert(leaf.key, site.issued.chain_ders[-1], "r", False, False, NO_KEY, CERTIFICATE, "root", "root",
                     0o644, 0.0)
    assert entry_role(leaf, TRUST_ANCHOR, explicit=False) == SERVICE
    assert entry_role(root, TRUST_ANCHOR, explicit=False) == TRUST_ANCHOR
    assert entry_role(leaf, TRUST_ANCHOR, explicit=True) == TRUST_ANCHOR
    assert entry_role(root, None, explicit=False) == SERVICE


@pytest.mark.skipif(not (SYSTEM_CERTS / "ca-certificates.crt").is_file(), reason="needs Debian's ca-certificates")
def test_local_scan_shows_trust_anchors_apart(tmp_path: Path, make_site) -> None:
    site = make_site("www.example.test")
    config = load_config(_cfg(tmp_path, (
        '[discovery]\nprocesses = false\n'
        f'[[store]]\nname = "web"\npaths = ["{site.cert}"]\n'
        f'[[store]]\nname = "system"\npaths = ["{SYSTEM_CERTS}/ca-certificates.crt"]\n')))
    out = io.StringIO()
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    render_scan(config, "table", out, now)
    text = out.getvalue()
    table, _, anchors = text.partition("Trust anchors (")
    assert "www.example.test" in table and "ISRG" not in table           # service certificates only in the table
    assert re.search(r"system: \d+ certificates in 1 files", anchors)
    out = io.StringIO()
    render_scan(config, "json", out, now)
    doc = json.loads(out.getvalue())
    assert [r["common_name"] for r in doc["certificates"]] == ["www.example.test"]
    assert doc["summary"]["trust_anchors"] == len(doc["trust_anchors"]) > 100
    assert {r["role"] for r in doc["trust_anchors"]} == {"trust_anchor"}
