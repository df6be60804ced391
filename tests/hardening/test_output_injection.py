"""Agent-supplied text on its way to the admin: CSV exports carry the formula guard, and tables
and other CLI output escape control characters (no faked rows, no retitled terminal). A real
collector and agent; the certificate and file name are what a compromised host would report."""
from __future__ import annotations

import csv
import datetime as dt
import io
import pathlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collector.reports.text import csv_safe, terminal_safe
from tests.e2e.harness import Agent, Collector

FORMULA_CN = "formula.example"
FORMULA_HOST = '=HYPERLINK("http://evil.example/x","click")'     # the agent names its host
ESC_CN = "web\x1b]0;pwned\x07\x1b[2K\rOK fake-row"
EVIL_FILE = "evil\x1b[31m\r.pem"


def _cert(path: pathlib.Path, cn: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=20)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_guards_as_functions() -> None:
    assert csv_safe("=1+1") == "'=1+1" and csv_safe("@x") == "'@x" and csv_safe("ok") == "ok" and csv_safe(-3) == -3
    assert terminal_safe("a\x1b[2Jb\rc\x9bd\u202ee") == "a\\u001b[2Jb\\u000dc\\u009bd\\u202ee"


@pytest.fixture()
def fleet(tmp_path: pathlib.Path):
    c = Collector(tmp_path / "collector")
    c.start()
    assert c.init_admin().code == 0
    stores = tmp_path / "stores"
    stores.mkdir()
    _cert(stores / "formula.pem", FORMULA_CN)
    _cert(stores / EVIL_FILE, ESC_CN)
    agent = Agent(tmp_path / "agent", f'[[store]]\nname = "c"\ntype = "pem"\npaths = ["{stores}/*.pem"]\n')
    agent.write_config(hostname=FORMULA_HOST.replace('"', '\\"'))
    assert agent.enroll(c, c.token()).code == 0
    r = agent.run_once()
    assert r.code == 0, r.err
    yield c
    c.stop()


def test_csv_export_carries_the_formula_guard(fleet: Collector) -> None:
    r = fleet.cli("certs", "list", "--format", "csv")
    assert r.code == 0, r.err
    hosts = [row["host"] for row in csv.DictReader(io.StringIO(r.out))]
    assert hosts and all(h == "'" + FORMULA_HOST for h in hosts), hosts


def test_tables_escape_control_characters(fleet: Collector) -> None:
    for args in (("certs", "list"), ("certs", "list", "--format", "csv"), ("agents", "list")):
        r = fleet.cli(*args)
        assert r.code == 0, r.err
        assert "\x1b" not in r.out and "\x07" not in r.out, args
        assert "\r" not in r.out.replace("\r\n", "\n"), args
    r = fleet.cli("certs", "list")
    assert "\\u001b]0\\;pwned" in r.out and "\\u001b[31m" in r.out   # shown, escaped, not run
