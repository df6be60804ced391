"""Edge facts through the real programs: a certificate whose not-before is in the future is flagged
(``certs show``, ``violations list`` with rule ``not_yet_valid``, the violations report), and a name
that is not valid UTF-8 is shown decoded with replacement characters and marked in ``certs show``."""
from __future__ import annotations

import datetime as dt
import hashlib
import pathlib
import ssl
import subprocess
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector
from tests.e2e.test_sync_lifecycle import pem_store


def future_cert(path: pathlib.Path, cn: str, starts_in: dt.timedelta) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = dt.datetime.now(dt.timezone.utc) + starts_in
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert.fingerprint(hashes.SHA256()).hex()


def not_utf8_cert(path: pathlib.Path, work: pathlib.Path) -> str:
    """openssl's certificate for CN=cafX.example.test with the X made a byte that is not UTF-8."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(work / "bad.key"), "-out", str(work / "bad.crt"), "-days", "30",
                    "-subj", "/O=Acme/CN=cafX.example.test"], check=True, capture_output=True)
    der = ssl.PEM_cert_to_DER_cert((work / "bad.crt").read_text()).replace(b"cafX", b"caf\xff")
    path.write_text(ssl.DER_cert_to_PEM_cert(der))
    return hashlib.sha256(der).hexdigest()


def test_not_yet_valid_and_not_utf8_names_are_flagged(tmp_path: pathlib.Path) -> None:
    need_tools("openssl")
    stores = tmp_path / "stores"
    stores.mkdir()
    future_fp = future_cert(stores / "future.pem", "future.example.test", dt.timedelta(days=3, hours=1))
    bad_fp = not_utf8_cert(stores / "name.pem", tmp_path)
    c = Collector(tmp_path / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        agent = Agent(tmp_path / "agent", pem_store(stores))
        agent.write_config(hostname="edge-host")
        assert agent.enroll(c, c.token()).code == 0
        r = agent.run_once()
        assert r.code == 0, r.out + r.err

        r = c.cli("certs", "show", future_fp[:16])
        assert r.code == 0, r.err
        assert "NOT YET VALID: valid from" in r.out and "in 3 day(s); clients refuse it until then" in r.out, r.out
        d = c.cli("certs", "show", future_fp[:16], "--format", "json").json()
        assert d["not_yet_valid"] is True and d["names_not_text"] == []
        table = c.cli("certs", "list", env=dict(c.env, COLUMNS="200"))
        row = next(line for line in table.out.splitlines() if "future.example.test" in line)
        assert row.startswith("NOT YET"), table.out
        listed = {x["fingerprint_sha256"]: x for x in c.cli("certs", "list", "--format", "json").json()}
        assert listed[future_fp]["not_yet_valid"] is True and listed[bad_fp]["not_yet_valid"] is False

        deadline = time.monotonic() + 20        # evaluated in the background after the report
        found: list[dict] = []
        while time.monotonic() < deadline and not found:
            found = [v for v in c.cli("violations", "list", "--format", "json").json() if v["rule"] == "not_yet_valid"]
            time.sleep(0.3)
        assert [pathlib.Path(v["path"]).name for v in found] == ["future.pem"], found
        assert "not valid before" in found[0]["reason"]
        rep = c.cli("report", "violations", "--format", "json")
        assert rep.code == 0 and "not_yet_valid" in rep.out and "future.example.test" in rep.out, rep.out + rep.err

        r = c.cli("certs", "show", bad_fp[:16])
        assert r.code == 0, r.err
        subject = next(line for line in r.out.splitlines() if line.startswith("Subject:"))
        assert "CN=caf\ufffd.example.test,O=Acme" in subject and "not valid text" in subject, r.out
        d = c.cli("certs", "show", bad_fp[:16], "--format", "json").json()
        assert d["names_not_text"] == ["subject", "issuer"] and d["subject"].startswith("#")
        assert d["subject_text"] == "CN=caf\ufffd.example.test,O=Acme"
    finally:
        c.stop()
