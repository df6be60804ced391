"""Report builders (collector/reports/) on real registry data, SQLite and PostgreSQL.

(The inventory reports agents send are tested in test_registry_reports.py.)
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from collector.domain import ownership as own
from collector import reports
from collector.errors import InvalidInput
from collector.registry import Registry
from collector.registry.certificates import CertificateStore
from collector.reports import audit as audit_report
from collector.reports.model import Report, Section
from collector.reports.render import render
from tests.helpers.registry_certs import T0, header, leaf, location, root_ca, rsa_key, scan_error, sha1_cert_der, store_report

NOW = T0 + dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def section(report: Report, title: str) -> Section:
    (s,) = [s for s in report.sections if s.title == title]
    return s


def rows(s: Section) -> list[dict[str, Any]]:
    return [dict(zip(s.columns, r)) for r in s.rows]


def summary(report: Report) -> dict[str, Any]:
    return dict(report.summary)


@pytest.fixture
def fleet(registry: Registry, make_agent, monkeypatch):  # type: ignore[no-untyped-def]
    """Two hosts with certificates expiring at different times, owners, a rule, labels and scan errors."""
    monkeypatch.setattr(Registry, "PAGE_SIZE", 2)   # stream in several pages
    monkeypatch.setattr(CertificateStore, "PAGE_SIZE", 2)
    make_agent("a1", "web1.example.com")
    make_agent("a2", "db1.example.com")
    make_agent("a3", "old1.example.com", now=T0 - 3 * DAY)    # never reports again: silent
    root = root_ca()
    certs = {
        "expired": leaf("expired.example.com", root, days=0.5),     # not_after T0 - 12h
        "soon": leaf("<script>alert(1)</script>.example.com", root, days=6),   # 4 days left at NOW
        "month": leaf("month.example.com", root, days=21),
        "quarter": leaf("quarter.example.com", root, days=61),
        "later": leaf("later.example.com", root, days=201),
    }
    store_report(registry, "a1", header("r1", full=True, sequence=1, hostname="web1.example.com"), [
        location(certs["expired"], "/etc/nginx/expired.pem"),
        location(certs["soon"], "/etc/nginx/soon.pem"),
        location(certs["month"], "/srv/app/month.pem", labels={"owner": "web"}),     # owner from a label only
        location(certs["later"], "/etc/nginx/later.pem"),
    ], errors=[scan_error("/etc/ssl/a.p12"), scan_error("/etc/ssl/b.p12")])
    store_report(registry, "a2", header("r2", full=True, sequence=1, hostname="db1.example.com"), [
        location(certs["quarter"], "/var/lib/pg/server.pem", labels={"owner": "dba"}),  # dba is not registered
        location(certs["soon"], "/var/lib/pg/soon-copy.pem"),                           # nobody
    ], errors=[scan_error("/var/lib/pg/x.jks", reason="corrupt", message="not a keystore")])
    store = registry.owners
    store.create_owner("web", T0, contacts=["web@example.com"], actor="admin:alice", reason="web team")
    store.add_rule("nginx", T0, owner="web", environment="prod", criticality="high", service="shop",
                   path="/etc/nginx/**", actor="admin:alice")
    return certs


def test_expiring_sections_and_ownership(registry: Registry, fleet) -> None:  # type: ignore[no-untyped-def]
    r = reports.build(registry, "expiring", {}, NOW)
    assert r.name == "expiring" and r.generated_at == NOW
    assert [s.title for s in r.sections] == ["By owner", "Expired, still installed", "Within 7 days",
                                            "Within 30 days", "Within 90 days", "Stale services"]
    # per owner, locations per window: web has the expired one, one within 7 days and one within 30;
    # dba (a label, not registered) one within 90; the unowned copy on db1 comes last
    assert section(r, "By owner").columns == ("owner", "expired", "within_7_days", "within_30_days",
                                              "within_90_days", "locations")
    assert section(r, "By owner").rows == [("web", 1, 1, 1, 0, 3), ("dba", 0, 0, 0, 1, 1),
                                           ("(no owner)", 0, 1, 0, 0, 1)]
    (expired,) = rows(section(r, "Expired, still installed"))
    assert expired["days_left"] == -1 and expired["path"] == "/etc/nginx/expired.pem"
    soon = rows(section(r, "Within 7 days"))
    assert {(x["host"], x["path"]) for x in soon} == {("web1.example.com", "/etc/nginx/soon.pem"),
                                                      ("db1.example.com", "/var/lib/pg/soon-copy.pem")}
    by_host = {x["host"]: x for x in soon}
    web = by_host["web1.example.com"]
    assert (web["owner"], web["environment"], web["criticality"], web["service"], web["owner_source"]) == (
        "web", "prod", "high", "shop", "rule:nginx")
    assert web["days_left"] == 4 and web["subject"] == "<script>alert(1)</script>.example.com"
    assert web["fingerprint"] == fleet["soon"].fingerprint
    assert by_host["db1.example.com"]["owner"] is None
    (month,) = rows(section(r, "Within 30 days"))
    assert (month["owner"], month["owner_source"]) == ("web", "label")
    (quarter,) = rows(section(r, "Within 90 days"))
    assert quarter["owner"] == "dba"
    assert all(x["path"] != "/etc/nginx/later.pem" for s in r.sections[1:] for x in rows(s))   # beyond 90 days
    s = summary(r)
    assert s["Within 7 days: certificates"] == 1 and s["Within 7 days: locations"] == 2
    assert s["Expired, still installed: certificates"] == 1 and s["Locations without an owner"] == 1

    # a shorter horizon drops thresholds beyond it; a longer one adds a section
    r = reports.build(registry, "expiring", {"within": "30d"}, NOW)
    assert [s.title for s in r.sections] == ["By owner", "Expired, still installed", "Within 7 days", "Within 30 days",
                                            "Stale services"]
    r = reports.build(registry, "expiring", {"within": "365"}, NOW)
    assert [s.title for s in r.sections][-2:] == ["Within 365 days", "Stale services"]
    assert rows(r.sections[-2])[0]["path"] == "/etc/nginx/later.pem"
    with pytest.raises(InvalidInput, match="within: 'soon' is not a duration"):
        reports.build(registry, "expiring", {"within": "soon"}, NOW)
    with pytest.raises(InvalidInput, match="limit: 'many' is not a whole number"):
        reports.build(registry, "expiring", {"limit": "many"}, NOW)
    with pytest.raises(InvalidInput, match="takes no parameter bogus"):
        reports.build(registry, "expiring", {"bogus": "1"}, NOW)
    with pytest.raises(InvalidInput, match="no report 'nope'"):
        reports.build(registry, "nope", {}, NOW)


def test_expiring_limit_team_and_explicit_assignments(registry: Registry, fleet) -> None:  # type: ignore[no-untyped-def]
    from collector.registry.types import LocationSelector

    # explicit assignments override the rule: the certificate "soon" (both copies) to dba-team,
    # then its web1 location back to web; a location assignment names a location, not a certificate
    store = registry.owners
    store.create_owner("dba-team", NOW, contacts=["dba@example.com"])
    store.assign(fleet["soon"].fingerprint, NOW, owner="dba-team", environment="test", reason="theirs")
    store.assign(fleet["soon"].fingerprint, NOW, owner="web",
                 where=LocationSelector(agent_id="a1", path="/etc/nginx/soon.pem"), reason="ours here")
    r = reports.build(registry, "expiring", {}, NOW)
    soon = {x["host"]: x for x in rows(section(r, "Within 7 days"))}
    assert (soon["web1.example.com"]["owner"], soon["web1.example.com"]["owner_source"]) == ("web", "explicit")
    assert soon["web1.example.com"]["environment"] == "test"      # from the certificate's assignment
    assert (soon["db1.example.com"]["owner"], soon["db1.example.com"]["owner_source"]) == ("dba-team", "explicit")

    # limit: the soonest rows of each window, resolved as in the full report; every location still
    # counted (by an aggregate: the same counts as the full report's), the cut said
    full = reports.build(registry, "expiring", {}, NOW)
    r = reports.build(registry, "expiring", {"limit": "1"}, NOW)
    assert [s.title for s in r.sections] == [s.title for s in full.sections][1:]      # no "By owner"
    assert len(section(r, "Within 7 days").rows) == 1
    assert section(r, "Within 7 days").rows[0] in section(full, "Within 7 days").rows
    assert "showing the soonest 1 of 2" in section(r, "Within 7 days").note
    assert "showing" not in section(r, "Within 30 days").note
    assert {k: v for k, v in summary(r).items() if k.endswith(("certificates", "locations"))} == {
        k: v for k, v in summary(full).items() if k.endswith(("certificates", "locations"))}
    assert "Locations without an owner" not in summary(r) and "--all" in summary(r)["Locations per owner"]
    r = reports.build(registry, "expiring", {"limit": "0"}, NOW)
    assert all(not s.rows for s in r.sections) and summary(r)["Within 90 days: certificates"] == 1
    r = reports.build(registry, "expiring", {"limit": "5", "within": "365d"}, NOW)
    assert [x["path"] for x in rows(section(r, "Within 365 days"))] == ["/etc/nginx/later.pem"]

    # a team sees its locations only, and counts only them (with a limit too)
    r = reports.build(registry, "expiring", {"limit": "1"}, NOW, team="web")
    assert [x["path"] for s in r.sections[1:] for x in rows(s)] == [
        "/etc/nginx/expired.pem", "/etc/nginx/soon.pem", "/srv/app/month.pem"]
    assert summary(r)["Within 7 days: locations"] == 1
    r = reports.build(registry, "expiring", {}, NOW, team="web")
    assert {(x["host"], x["path"]) for s in r.sections[1:] for x in rows(s)} == {
        ("web1.example.com", "/etc/nginx/expired.pem"), ("web1.example.com", "/etc/nginx/soon.pem"),
        ("web1.example.com", "/srv/app/month.pem")}
    assert summary(r)["Team"] == "web" and summary(r)["Within 7 days: locations"] == 1
    assert summary(r)["Locations without an owner"] == 0 and "(team web)" in r.title
    assert [row[0] for row in section(r, "By owner").rows] == ["web"]
    r = reports.build(registry, "expiring", {}, NOW, team="nobody")
    assert all(not s.rows for s in r.sections) and summary(r)["Within 7 days: certificates"] == 0
    with pytest.raises(InvalidInput, match="covers the whole fleet"):
        reports.build(registry, "coverage", {}, NOW, team="web")


def test_owners_orphaned_and_unconfirmed(registry: Registry, fleet) -> None:  # type: ignore[no-untyped-def]
    r = reports.build(registry, "owners", {}, NOW)
    orphaned = rows(section(r, "Orphaned"))
    assert {(x["host"], x["path"], x["reason"]) for x in orphaned} == {
        ("db1.example.com", "/var/lib/pg/soon-copy.pem", own.NO_OWNER),
        ("db1.example.com", "/var/lib/pg/server.pem", own.UNKNOWN_OWNER),
    }
    assert [x["reason"] for x in orphaned] == [own.NO_OWNER, own.UNKNOWN_OWNER]   # worst first
    # the same certificates as the owners store's orphan search
    assert {x["fingerprint"] for x in orphaned} == {o.certificate.fingerprint for o in registry.owners.orphans(NOW)}
    (unconfirmed,) = rows(section(r, "Unconfirmed"))
    assert (unconfirmed["path"], unconfirmed["owner"]) == ("/srv/app/month.pem", "web")
    s = summary(r)
    assert s["Orphaned certificates"] == 2 and s["Unconfirmed locations"] == 1
    assert s[f"Orphaned locations: {own.UNKNOWN_OWNER}"] == 1 and s["Certificates present"] == 5

    # confirming by a rule and registering dba fixes both; an owner losing its contact orphans again
    registry.owners.add_rule("apps", NOW, owner="web", path="/srv/app/**")
    registry.owners.create_owner("dba", NOW, contacts=["dba@example.com"])
    r = reports.build(registry, "owners", {}, NOW)
    # dba is reachable now, but still known only from the label: unconfirmed
    assert [(x["path"], x["owner"]) for x in rows(section(r, "Unconfirmed"))] == [("/var/lib/pg/server.pem", "dba")]
    assert [x["path"] for x in rows(section(r, "Orphaned"))] == ["/var/lib/pg/soon-copy.pem"]
    registry.owners.update_owner("dba", NOW, contacts=[])
    r = reports.build(registry, "owners", {}, NOW)
    assert own.NO_WORKING_CONTACT in {x["reason"] for x in rows(section(r, "Orphaned"))}


def test_coverage_agents_errors_and_silent_hosts(registry: Registry, fleet) -> None:  # type: ignore[no-untyped-def]
    r = reports.build(registry, "coverage", {}, NOW)
    agents = {x["host"]: x for x in rows(section(r, "Agents"))}
    assert set(agents) == {"web1.example.com", "db1.example.com", "old1.example.com"}
    web = agents["web1.example.com"]
    assert (web["stores"], web["locations"], web["scan_errors"], web["silent"]) == (4, 4, 2, False)
    assert web["last_report"] == "2026-01-01T12:00:00Z"
    old = agents["old1.example.com"]
    assert (old["stores"], old["locations"], old["last_report"], old["silent"]) == (0, 0, None, True)
    (silent,) = rows(section(r, "Silent hosts"))
    assert silent["host"] == "old1.example.com" and silent["silent_for"] == "3d 1h"
    reasons = rows(section(r, "Scan errors by reason"))
    assert [(x["reason"], x["errors"]) for x in reasons] == [("wrong_password", 2), ("corrupt", 1)]
    assert reasons[0]["hosts"] == "web1.example.com" and "db1.example.com:/var/lib/pg/x.jks" in reasons[1]["example"]
    assert len(rows(section(r, "Scan errors"))) == 3
    s = summary(r)
    assert s["Agents"] == 3 and s["Stores scanned"] == 6 and s["Agents that never reported"] == 1
    assert s["Silent hosts (not seen for 1d 0h)"] == 1

    r = reports.build(registry, "coverage", {"silent_after": "4d"}, NOW)
    assert rows(section(r, "Silent hosts")) == []
    # revoked agents are listed, never silent
    registry.revoke_agent("a3", "retired", NOW)
    r = reports.build(registry, "coverage", {}, NOW)
    assert rows(section(r, "Silent hosts")) == []


def test_audit_by_category_and_range(registry: Registry, fleet) -> None:  # type: ignore[no-untyped-def]
    log = registry.audit
    log.record(NOW, "operator:bob", "renewal.request", "cert:abc", "expires soon")
    log.record(NOW + dt.timedelta(minutes=1), "collector", "job.issued", "job:1", "issued by internal CA")
    log.record(NOW + dt.timedelta(minutes=2), "agent:a1", "job.verified", "job:1", "serving the new certificate")
    log.record(NOW + dt.timedelta(minutes=3), "admin:alice", "certificate.revoke", "cert:old", "key compromise")
    log.record(NOW + dt.timedelta(minutes=4), "admin:alice", "policy.update", "policy:default", "<b>no SHA-1</b>")
    log.record(NOW + 10 * DAY, "admin:alice", "certificate.revoke", "cert:later", "outside the range")
    until = NOW + DAY
    r = reports.build(registry, "audit", {"since": "2026-01-01", "until": until.isoformat()}, NOW + 20 * DAY)
    got = {s.title: [(x["actor"], x["action"], x["reason"]) for x in rows(s)] for s in r.sections}
    assert got["Requested"] == [("operator:bob", "renewal.request", "expires soon")]
    assert got["Issued"] == [("collector", "job.issued", "issued by internal CA")]
    assert got["Installed and verified"] == [("agent:a1", "job.verified", "serving the new certificate")]
    assert got["Revoked"] == [("admin:alice", "certificate.revoke", "key compromise")]
    assert got["Policy and exception changes"] == [("admin:alice", "policy.update", "<b>no SHA-1</b>")]
    assert ("admin:alice", "owner.create", "web team") in got["Ownership changes"]
    assert all("outside the range" not in x[2] for v in got.values() for x in v)
    s = summary(r)
    assert s["Since"] == "2026-01-01T00:00:00Z" and s["Until"] == "2026-01-02T13:00:00Z"
    assert s["Events"] == sum(len(v) for v in got.values())
    # default range: the last 30 days
    r = reports.build(registry, "audit", {}, NOW + 40 * DAY)
    assert [x["reason"] for x in rows(section(r, "Revoked"))] == ["outside the range"]
    with pytest.raises(InvalidInput, match="must be after since"):
        reports.build(registry, "audit", {"since": "2026-02-01", "until": "2026-01-01"}, NOW)
    with pytest.raises(InvalidInput, match="not an ISO 8601 time"):
        reports.build(registry, "audit", {"since": "yesterday"}, NOW)
    assert reports.spec("audit").permission == "audit_read"


def test_every_report_renders_in_every_format(registry: Registry, fleet) -> None:  # type: ignore[no-untyped-def]
    for name in reports.REPORTS:
        r = reports.build(registry, name, {}, NOW)
        for fmt in ("table", "csv", "json", "html"):
            assert render(r, fmt, 100)
    assert "&lt;script&gt;alert(1)" in render(reports.build(registry, "expiring", {}, NOW), "html")


def test_spec_params_match_modules() -> None:
    import importlib

    for name, spec in reports.REPORTS.items():
        assert importlib.import_module(spec.module).PARAMS == spec.params, name
    assert audit_report.category("job.rolled_back") == "failed"
    assert audit_report.category("exception.grant") == "policy"
    assert audit_report.category("call.refused") == "refused"


@pytest.fixture(scope="module")
def sha1_der(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return sha1_cert_der(tmp_path_factory.mktemp("sha1"))


@pytest.fixture
def violated(registry: Registry, make_agent, sha1_der: bytes):  # type: ignore[no-untyped-def]
    """web1 (owner web by a rule): a SHA-1 and an RSA-1024 certificate and a good one; db1 (no owner): RSA-1024.
    Evaluated, then the SHA-1 one waived by an exception in force and db1's by one that has expired."""
    from cryptography import x509

    base = x509.load_der_x509_certificate(sha1_der).not_valid_before_utc.replace(microsecond=0) + dt.timedelta(hours=1)
    make_agent("a1", "web1.example.com", now=base)
    make_agent("a2", "db1.example.com", now=base)
    root = root_ca(not_before=base - DAY)
    weak = leaf("old.example.com", root, key=rsa_key(1024), not_before=base - DAY)
    good = leaf("www.example.com", root, not_before=base - DAY)
    store_report(registry, "a1", header("r1", full=True, sequence=1, hostname="web1.example.com"), [
        location(sha1_der, "/etc/legacy/cert.pem"), location(weak, "/etc/old/cert.pem"),
        location(good, "/etc/nginx/cert.pem")], now=base)
    store_report(registry, "a2", header("r2", full=True, sequence=1, hostname="db1.example.com"), [
        location(weak, "/var/lib/pg/weak.pem")], now=base)
    registry.owners.create_owner("web", base, contacts=["web@example.com"])
    registry.owners.add_rule("web", base, owner="web", environment="prod", host="web*")
    pols = registry.policies
    pols.evaluate_all(base + H)
    sha1_fp = next(v.fingerprint for v in pols.list_violations(base + H) if v.rule == "forbidden_signature_algorithms")
    waiver = pols.add_exception("forbidden_signature_algorithms", base + H, fingerprint=sha1_fp,
                                reason="legacy appliance", expires_at=base + DAY, actor="admin:alice")
    gone = pols.add_exception("min_rsa_bits", base + H, pattern="db1.example.com", reason="until the upgrade",
                              expires_at=base + 2 * H, actor="admin:bob")
    return base + 3 * H, sha1_fp, weak, waiver, gone


H = dt.timedelta(hours=1)


def test_violations_by_rule_and_owner_with_exceptions_apart(registry: Registry, violated) -> None:  # type: ignore[no-untyped-def]
    now, sha1_fp, weak, waiver, gone = violated
    r = reports.build(registry, "violations", {}, now)
    assert r.name == "violations"
    assert [s.title for s in r.sections] == ["By rule", "By owner", "Waived by exceptions", "Expired exceptions"]
    by_rule = rows(section(r, "By rule"))
    # the SHA-1 one is waived, so only the two RSA-1024 locations are active (db1's exception has expired)
    assert [(x["rule"], x["host"], x["path"]) for x in by_rule] == [
        ("min_rsa_bits", "db1.example.com", "/var/lib/pg/weak.pem"),
        ("min_rsa_bits", "web1.example.com", "/etc/old/cert.pem")]
    web = next(x for x in by_rule if x["host"] == "web1.example.com")
    assert (web["fingerprint"], web["subject"], web["owner"], web["environment"]) == (
        weak.fingerprint, "old.example.com", "web", "prod")
    assert "1024 bits" in web["reason"] and web["first_seen"] == reports.model.iso(now - 2 * H)
    by_owner = rows(section(r, "By owner"))
    assert [(x["owner"], x["host"]) for x in by_owner] == [("web", "web1.example.com"), (None, "db1.example.com")]
    assert "min_rsa_bits: 2" in section(r, "By rule").note
    assert "(no owner): 1" in section(r, "By owner").note and "web: 1" in section(r, "By owner").note
    (w,) = rows(section(r, "Waived by exceptions"))
    assert (w["fingerprint"], w["rule"], w["path"], w["owner"]) == (
        sha1_fp, "forbidden_signature_algorithms", "/etc/legacy/cert.pem", "web")
    assert (w["exception_id"], w["exception_reason"], w["granted_by"], w["expires_at"]) == (
        waiver.id, "legacy appliance", "admin:alice", reports.model.iso(waiver.expires_at))
    assert all(x["fingerprint"] != sha1_fp for s in ("By rule", "By owner") for x in rows(section(r, s)))
    (e,) = rows(section(r, "Expired exceptions"))
    assert (e["exception_id"], e["rule"], e["target"], e["reason"], e["granted_by"]) == (
        gone.id, "min_rsa_bits", "pattern:db1.example.com", "until the upgrade", "admin:bob")
    s = summary(r)
    assert (s["Active violations"], s["Rule min_rsa_bits"], s["Owner web"], s["Owner (no owner)"]) == (2, 2, 1, 1)
    assert (s["Waived by exceptions"], s["Exceptions in force"], s["Expired exceptions"]) == (1, 1, 1)
    assert reports.spec("violations").permission == "read"

    # once the waiver expires too, the SHA-1 violation is back among the active ones
    later = reports.build(registry, "violations", {}, now + 2 * DAY)
    assert {x["rule"] for x in rows(section(later, "By rule"))} == {"min_rsa_bits", "forbidden_signature_algorithms"}
    assert rows(section(later, "Waived by exceptions")) == []
    assert len(rows(section(later, "Expired exceptions"))) == 2

    for fmt in ("table", "csv", "json", "html"):
        out = render(r, fmt, 100)
        assert "min_rsa_bits" in out and "legacy appliance" in out.replace("\n", " ") or fmt == "table"
        if fmt != "csv":
            assert all(t in out for t in ("By rule", "By owner", "Waived by exceptions", "Expired exceptions"))
    assert "old.example.com" in render(r, "html", 100) and "old.example.com" in render(r, "csv", 100)
    with pytest.raises(InvalidInput, match="takes no parameter"):
        reports.build(registry, "violations", {"bogus": "1"}, now)


def test_violations_for_one_team(registry: Registry, violated) -> None:  # type: ignore[no-untyped-def]
    now, sha1_fp, weak, waiver, gone = violated
    r = reports.build(registry, "violations", {}, now, team="web")
    assert "(team web)" in r.title
    assert [(x["rule"], x["host"], x["path"]) for x in rows(section(r, "By rule"))] == [
        ("min_rsa_bits", "web1.example.com", "/etc/old/cert.pem")]         # not db1's copy
    assert [x["fingerprint"] for x in rows(section(r, "Waived by exceptions"))] == [sha1_fp]
    assert rows(section(r, "Expired exceptions")) == []                     # db1's pattern exception is not web's
    s = summary(r)
    assert (s["Team"], s["Active violations"], s["Exceptions in force"], s["Expired exceptions"]) == ("web", 1, 1, 0)
    assert "Owner (no owner)" not in s
    r = reports.build(registry, "violations", {}, now, team="db")
    assert all(not sec.rows for sec in r.sections) and summary(r)["Active violations"] == 0


def test_owners_report_for_one_team(registry: Registry, fleet) -> None:  # type: ignore[no-untyped-def]
    r = reports.build(registry, "owners", {}, NOW, team="web")
    assert rows(section(r, "Orphaned")) == []                               # web is reachable
    assert [(x["path"], x["owner"]) for x in rows(section(r, "Unconfirmed"))] == [("/srv/app/month.pem", "web")]
    s = summary(r)
    assert (s["Team"], s["Locations present"], s["Registered owners"]) == ("web", 4, 1)
    registry.owners.update_owner("web", NOW, contacts=[])                   # web loses its only contact
    r = reports.build(registry, "owners", {}, NOW, team="web")
    orphaned = rows(section(r, "Orphaned"))
    assert {x["reason"] for x in orphaned} == {own.NO_WORKING_CONTACT} and len(orphaned) == 4
    assert all(x["host"] == "web1.example.com" for x in orphaned)          # db1's orphans are not web's
