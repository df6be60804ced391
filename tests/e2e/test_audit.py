"""The audit trail through the real programs: changes are audited, an auditor reads but cannot
change, a refused call is itself audited, and an event edited in the database is named."""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.harness import Agent, Collector


def write_cert(path: pathlib.Path, cn: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("audit")
    c = Collector(work / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        stores = work / "stores"
        stores.mkdir()
        write_cert(stores / "web.pem", "web.example.test")
        agent = Agent(work / "agent", f'[[store]]\nname = "certs"\ntype = "pem"\npaths = ["{stores}/*.pem"]\n')
        agent.write_config(hostname="audit-host")
        r = agent.enroll(c, c.token())
        assert r.code == 0, r.err
        r = agent.run_once()
        assert r.code == 0, r.err
        r = c.init_admin(name="carol", role="auditor", out=work / "auditor")
        assert r.code == 0, r.err
        yield c, dict(c.env, CERTFLEET_CONFIG=str(work / "auditor" / "certfleet.toml"))
    finally:
        c.stop()


def audit_list(c: Collector, *args: str, env: dict | None = None) -> list[dict]:
    r = c.cli("audit", "list", "--format", "json", "--limit", "500", *args, env=env)
    assert r.code == 0, r.err
    return r.json()


def test_changes_are_audited_and_the_chain_verifies(fleet) -> None:
    c, _ = fleet
    r = c.cli("audit", "verify")
    assert r.code == 0, r.out + r.err
    assert "audit trail intact" in r.out
    events = audit_list(c)
    acts = {e["action"]: e for e in events}
    assert {"admin.init", "token.create", "enroll", "inventory.report"} <= acts.keys()
    assert acts["token.create"]["actor"] == "admin:admin"
    assert acts["enroll"]["detail"]["hostname"] == "audit-host"
    assert acts["enroll"]["actor"] == acts["inventory.report"]["actor"]
    assert acts["enroll"]["actor"].startswith("agent:")
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)
    table = c.cli("audit", "list", "--action", "token")
    assert table.code == 0 and "token.create" in table.out and "enroll" not in table.out


def test_an_auditor_reads_but_cannot_change_and_the_refusal_is_audited(fleet) -> None:
    c, auditor = fleet
    assert audit_list(c, env=auditor)
    r = c.cli("token", "create", env=auditor)
    assert r.code == 1 and "permission denied" in r.err and "auditor" in r.err, r.err
    (refused,) = [e for e in audit_list(c, "--action", "call.refused", env=auditor) if e["actor"] == "auditor:carol"]
    assert refused["target"] == "AdminService.CreateEnrollmentToken"
    assert refused["detail"]["permission"] == "enroll" and refused["detail"]["method"] == refused["target"]
    assert "may not enroll" in refused["reason"]
    # an auditor reads the fleet, and a renewal is refused, and audited, too
    r = c.cli("certs", "list", "--format", "json", env=auditor)
    assert r.code == 0, r.err
    fingerprint = r.json()[0]["fingerprint_sha256"]
    r = c.cli("renew", fingerprint, env=auditor)
    assert r.code == 1 and "may not renew" in r.err, r.err
    (renew,) = audit_list(c, "--actor", "auditor:carol", "--action", "call.refused", "--target", "AdminService.Renew")
    assert renew["detail"]["permission"] == "renew"
    assert c.cli("audit", "verify", env=auditor).code == 0


def test_export_is_json_lines_that_verify_offline(fleet, tmp_path: pathlib.Path) -> None:
    c, auditor = fleet
    out = tmp_path / "audit.jsonl"
    r = c.cli("audit", "export", "--out", str(out), env=auditor)
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)
    assert {"seq", "at", "actor", "action", "target", "reason", "detail", "prev_hash", "hash"} == lines[0].keys()
    r = c.cli("audit", "verify", "--file", str(out), env=auditor)
    assert r.code == 0, r.out + r.err
    future = c.cli("audit", "export", "--since", "2999-01-01", env=auditor)
    assert future.code == 0 and future.out == ""


def test_an_edited_event_is_named_by_verify(fleet) -> None:
    """Last in the module: it breaks the chain."""
    c, _ = fleet
    (token_event,) = audit_list(c, "--action", "token.create")
    db = c.workdir / "data" / "registry.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_events SET reason = 'routine' WHERE seq = ?", (token_event["seq"],))
    r = c.cli("audit", "verify")
    assert r.code == 1, r.out + r.err
    at = token_event["at"][:19] + "Z"
    assert (f"event {token_event['seq']} ({at} token.create by admin:admin): hash does not match; "
            "edited or reordered") in r.out
    r = c.cli("audit", "verify", "--format", "json")
    assert r.code == 1 and r.json()["first_broken_seq"] == token_event["seq"]
