"""Policy evaluation on a real registry (SQLite and PostgreSQL): a SHA-1 and an RSA-1024
certificate are flagged, fixing clears, an exception waives until it expires, a renewal
that breaks a locked rule is refused naming it, and every policy change is audited."""
from __future__ import annotations

import datetime as dt
import pathlib
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from collector.domain import policy as pol
from collector.issuers.internal_ca import InternalCA
from collector.registry.types import LocationSelector
from collector.services.renewal import RenewalService
from collector.config.templates import load_templates
from tests.helpers.registry_certs import header, leaf, location, root_ca, store_report

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def sha1_der(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A SHA-1 signed certificate: cryptography no longer signs with SHA-1, openssl still does."""
    d = tmp_path_factory.mktemp("sha1")
    subprocess.run(
        ["openssl", "req", "-x509", "-sha1", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "k.pem"),
         "-out", str(d / "c.pem"), "-days", "90", "-subj", "/CN=legacy.example.com",
         "-addext", "subjectAltName=DNS:legacy.example.com"],
        check=True, capture_output=True,
    )
    cert = x509.load_pem_x509_certificate((d / "c.pem").read_bytes())
    assert "sha1" in cert.signature_algorithm_oid._name.lower()
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


@pytest.fixture
def fleet(registry, make_agent, sha1_der):  # noqa: ANN001, ANN201
    sha1 = x509.load_der_x509_certificate(sha1_der)
    base = sha1.not_valid_before_utc.replace(microsecond=0) + H   # the SHA-1 certificate is valid from here
    make_agent("agent-1", "web1.example.com", now=base)
    root = root_ca(not_before=base - D)
    weak = leaf("old.example.com", root, key=rsa.generate_private_key(public_exponent=65537, key_size=1024),
                not_before=base - D)
    good = leaf("www.example.com", root, not_before=base - D)
    locs = [location(sha1_der, "/etc/legacy/cert.pem"), location(weak, "/etc/old/cert.pem"),
            location(good, "/etc/nginx/cert.pem")]
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), locs, now=base)
    return base, locs, weak, good


def _active(registry, now, **kw) -> set[tuple[str, str]]:  # noqa: ANN001
    return {(v.path, v.rule) for v in registry.policies.list_violations(now, **kw)}


def test_weak_certificates_are_flagged_fixing_clears_and_exceptions_waive_until_expiry(registry, fleet) -> None:  # noqa: ANN001
    base, locs, weak, good = fleet
    pols = registry.policies
    stats = pols.evaluate_agent("agent-1", base + H)
    assert stats.new == 2
    vs = {v.rule: v for v in pols.list_violations(base + H)}
    assert set(vs) == {"forbidden_signature_algorithms", "min_rsa_bits"}
    assert "sha1WithRSAEncryption" in vs["forbidden_signature_algorithms"].reason
    assert "1024 bits" in vs["min_rsa_bits"].reason
    assert vs["min_rsa_bits"].fingerprint == weak.fingerprint and vs["min_rsa_bits"].hostname == "web1.example.com"
    assert all(v.first_seen == base + H and v.cleared_at is None for v in vs.values())
    sha1_fp = vs["forbidden_signature_algorithms"].fingerprint

    # the scheduled run sees the same: nothing new, first_seen kept
    stats = pols.evaluate_all(base + 2 * H)
    assert (stats.new, stats.still, stats.cleared) == (0, 2, 0)
    again = {v.rule: v for v in pols.list_violations(base + 2 * H)}
    assert again["min_rsa_bits"].first_seen == base + H and again["min_rsa_bits"].last_seen == base + 2 * H
    assert list(pols.list_violations(base + 2 * H, rule="min_rsa_bits"))[0].rule == "min_rsa_bits"

    # fixed: the weak certificate is gone from the host
    store_report(registry, "agent-1", header("r2", full=True, sequence=2), [locs[0], locs[2]], now=base + 3 * H)
    stats = pols.evaluate_agent("agent-1", base + 3 * H)
    assert stats.cleared == 1
    assert _active(registry, base + 3 * H) == {("/etc/legacy/cert.pem", "forbidden_signature_algorithms")}
    (cleared,) = [v for v in pols.list_violations(base + 3 * H, include_cleared=True) if v.cleared_at]
    assert cleared.rule == "min_rsa_bits" and cleared.cleared_at == base + 3 * H

    # an exception waives the SHA-1 one ...
    exc = pols.add_exception("forbidden_signature_algorithms", base + 4 * H, fingerprint=sha1_fp[:12],
                             reason="legacy appliance, replaced in Q3", expires_at=base + 4 * H + D,
                             actor="admin:alice")
    assert exc.fingerprint == sha1_fp and exc.granted_by == "admin:alice"
    assert _active(registry, base + 5 * H) == set()
    (waived,) = pols.list_violations(base + 5 * H, include_excepted=True)
    assert waived.exception_id == exc.id
    pols.evaluate_all(base + 6 * H)
    assert _active(registry, base + 6 * H) == set()
    assert pols.list_exceptions(base + 6 * H, expired=True) == []

    # ... until it expires: the violation is back (the same one, first seen long ago) and the expiry reported
    later = base + 3 * D
    assert _active(registry, later) == {("/etc/legacy/cert.pem", "forbidden_signature_algorithms")}
    stats = pols.evaluate_all(later)
    assert stats.expired_exceptions == 1 and stats.new == 0
    (back,) = pols.list_violations(later)
    assert back.first_seen == base + H and back.exception_id is None
    assert [e.id for e in pols.list_exceptions(later, expired=True)] == [exc.id]
    assert pols.evaluate_all(later + H).expired_exceptions == 0     # reported once

    actions = [e.action for e in registry.audit.list(action="exception", limit=10)]
    assert actions == ["exception.expire", "exception.add"]
    pols.remove_exception(exc.id, later + 2 * H, actor="admin:alice", reason="done")
    assert registry.audit.list(action="exception.remove")[0].target == f"exception:{exc.id}"
    assert registry.audit.verify().ok


def test_exceptions_by_owner_and_pattern(registry, fleet) -> None:  # noqa: ANN001
    base, _, _, _ = fleet
    pols = registry.policies
    registry.owners.create_owner("web-team", base, contacts=["web@example.com"])
    registry.owners.add_rule("web", base, owner="web-team", host="web*")
    pols.evaluate_all(base + H)
    assert {v.owner for v in pols.list_violations(base + H)} == {"web-team"}
    assert len(list(pols.list_violations(base + H, owner="web-team"))) == 2
    pols.add_exception("*", base + H, owner="web-team", reason="migration", expires_at=base + D)
    assert _active(registry, base + 2 * H) == set()
    e2 = pols.add_exception("min_rsa_bits", base + 2 * H, pattern="old.example.com", reason="x", expires_at=base + 2 * D)
    assert e2.pattern == "old.example.com"
    # the owner exception expires; the pattern one still waives the RSA rule
    assert _active(registry, base + D + H) == {("/etc/legacy/cert.pem", "forbidden_signature_algorithms")}
    with pytest.raises(Exception, match="exactly one of"):
        pols.add_exception("min_rsa_bits", base, owner="a", pattern="b", reason="x", expires_at=base + D)


POLICY = """
[global]
min_rsa_bits = 2048
locked = ["min_rsa_bits", "max_validity_days"]

[[scope]]
environment = "prod"
max_validity_days = 60
"""


def test_policy_document_is_versioned_checked_and_audited(registry) -> None:  # noqa: ANN001
    pols = registry.policies
    now = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    assert pols.current().version == 0 and pols.current().source == "default"
    v1 = pols.set_policy(POLICY, now, actor="admin:alice", reason="baseline")
    assert v1.version == 1 and pols.current().doc.text == POLICY
    with pytest.raises(pol.PolicyError, match="loosens locked min_rsa_bits"):
        pols.set_policy(POLICY + '\n[[scope]]\nowner = "lab"\nmin_rsa_bits = 1024\n', now, actor="admin:alice")
    assert pols.current().version == 1
    # the collector's file: imported when it changed since the last import, not on every start
    assert pols.load_file(POLICY, now + H).version == 2
    assert pols.load_file(POLICY, now + 2 * H) is None
    pols.set_policy(POLICY.replace("60", "30"), now + 3 * H, actor="admin:bob")
    assert pols.load_file(POLICY, now + 4 * H) is None       # the CLI change survives a restart
    assert pols.current().version == 3
    events = registry.audit.list(action="policy.update")
    assert [(e.actor, e.detail["version"]) for e in events] == [("admin:bob", 3), ("collector", 2), ("admin:alice", 1)]
    assert events[-1].reason == "baseline"


def test_renewal_breaking_a_locked_rule_is_refused_naming_it(registry, make_agent, tmp_path: pathlib.Path) -> None:  # noqa: ANN001
    t0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
    make_agent("agent-1", "web1.example.com", now=t0)
    cert = leaf("www.example.test", root_ca())
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), [location(cert, "/etc/nginx/cert.pem")],
                 now=t0)
    templates = load_templates({
        "rsa": {"issuer": "internal", "key_type": "rsa", "key_size": 2048, "allowed_san_patterns": ["*.example.test"]},
        "long": {"issuer": "internal", "validity": "90d", "allowed_san_patterns": ["*.example.test"]},
        "short": {"issuer": "internal", "validity": "30d", "allowed_san_patterns": ["*.example.test"]},
    })
    svc = RenewalService(registry, {"internal": InternalCA("internal", tmp_path / "ca")}, templates, "short",
                         lambda: t0)
    registry.policies.set_policy(POLICY.replace("min_rsa_bits = 2048", "min_rsa_bits = 3072"), t0, actor="admin:a")
    with pytest.raises(pol.PolicyRefused, match="rule min_rsa_bits: template key rsa-2048 vs locked min_rsa_bits 3072"):
        svc.request(cert.fingerprint[:12], LocationSelector(), "rsa", "admin:test", "test")
    # validity: only locked for prod, and the host is not prod yet
    (job,) = svc.request(cert.fingerprint[:12], LocationSelector(), "long", "admin:test", "test")
    registry.owners.add_rule("prod-web", t0, environment="prod", host="web1*")
    cert2 = leaf("api.example.test", root_ca())
    store_report(registry, "agent-1", header("r2", full=False, sequence=2, base=1),
                 [location(cert2, "/etc/api/cert.pem")], now=t0)
    with pytest.raises(pol.PolicyRefused, match="rule max_validity_days: template validity 90d vs locked "
                                                "max_validity_days 60 for environment prod"):
        svc.request(cert2.fingerprint[:12], LocationSelector(), "long", "admin:test", "test")
    assert [j.job_id for j in registry.jobs.list(limit=10)] == [job.job_id]     # nothing queued by the refusal
    (ok,) = svc.request(cert2.fingerprint[:12], LocationSelector(), "short", "admin:test", "test")
    assert ok.template == "short"
