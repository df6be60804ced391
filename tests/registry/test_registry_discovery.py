"""Registry contract (SQLite and PostgreSQL): discovery facts on locations (role, endpoint, processes,
stale services, Windows entries), stale_since across reports, and network scan jobs from start to end."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from collector.domain import netscan as d
from collector.errors import Ambiguous, InvalidInput, NotFound, PermissionDenied
from collector.registry.types import CertFilter
from tests.helpers.registry_certs import T0, header, leaf, location, root_ca, store_report

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def certs():  # type: ignore[no-untyped-def]
    ca = root_ca()
    return {"ca": ca, "old": leaf("www.example.com", ca), "new": leaf("www.example.com", ca),
            "ep": leaf("mail.example.com", ca), "win": leaf("iis.example.com", ca)}


def endpoint_loc(cert, host: str, port: int, scan_id: str = "", sni: str = ""):  # type: ignore[no-untyped-def]
    loc = location(cert, f"{host}:{port}", store_type="endpoint", alias=sni, file_mtime=None)
    return dataclasses.replace(loc, endpoint={
        "host": host, "port": port, "sni": sni, "protocol": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384",
        "starttls": "", "chain_valid": False, "validation_error": "self-signed", "chain_fingerprints": [],
        "source": "network_scan" if scan_id else "local_listener", "scan_id": scan_id, "handshake_seconds": 0.01})


PROC = {"pid": 4242, "name": "nginx", "executable": "/usr/sbin/nginx", "user": "root", "service": "nginx.service",
        "listen": ["127.0.0.1:8443"], "evidence": "config:nginx", "config_path": "/etc/nginx/nginx.conf",
        "suggested_reload": "nginx"}


def stale_file(cert, served_fp: str | None, since: dt.datetime | None = None):  # type: ignore[no-untyped-def]
    loc = location(cert, "/etc/nginx/tls/www.pem", labels={"service": "nginx"})
    if served_fp is None:
        return dataclasses.replace(loc, processes=[PROC])
    return dataclasses.replace(loc, processes=[PROC], stale_served_fingerprint=served_fp,
                               stale_endpoint="127.0.0.1:8443", stale_detail={"pid": 4242, "process_name": "nginx"},
                               stale_since=since)


def test_discovery_facts_stored_and_read(registry, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1", "web1.example.com")
    win = dataclasses.replace(
        location(certs["win"], "LocalMachine\\My", store_type="windows", alias="AB" * 20, has_private_key=True,
                 key_match="matches", entry_type="private_key_entry"),
        windows={"entry": {"store_location": "LocalMachine", "store_name": "My", "thumbprint": "AB" * 20,
                           "friendly_name": "iis", "key_exportable": False, "key_provider": "Microsoft Software Key Storage Provider",
                           "key_container": "c1"},
                 "iis_bindings": [{"site": "Default Web Site", "protocol": "https", "ip": "*", "port": 443,
                                   "host_name": "iis.example.com", "sni": True, "certificate_hash": "AB" * 20,
                                   "store_name": "My"}]})
    anchor = dataclasses.replace(location(certs["ca"], "/etc/ssl/certs/ca-certificates.crt", chain_index=3),
                                 role="trust_anchor")
    store_report(registry, "a1", header("r1", full=True, sequence=1), [
        stale_file(certs["old"], certs["new"].fingerprint), endpoint_loc(certs["ep"], "127.0.0.5", 8443, "s1"),
        win, anchor])

    full = registry.get_certificate(certs["old"].fingerprint)
    (loc,) = full.locations
    assert loc.details and loc.role == "service"
    assert loc.processes == (PROC,)
    assert (loc.stale_served_fingerprint, loc.stale_endpoint, loc.stale_since) == (
        certs["new"].fingerprint, "127.0.0.1:8443", T0)
    assert loc.stale_detail == {"pid": 4242, "process_name": "nginx"}

    ep = registry.get_certificate(certs["ep"].fingerprint).locations[0]
    assert ep.store_type == "endpoint" and ep.path == "127.0.0.5:8443"
    assert ep.endpoint["scan_id"] == "s1" and ep.endpoint["protocol"] == "TLSv1.3" and ep.endpoint["port"] == 8443

    w = registry.get_certificate(certs["win"].fingerprint).locations[0]
    assert w.windows["entry"]["key_provider"].startswith("Microsoft") and w.windows["iis_bindings"][0]["port"] == 443

    ta = registry.get_certificate(certs["ca"].fingerprint).locations[0]
    assert ta.role == "trust_anchor"

    # a list carries the role and the stale scalars, not the JSON facts
    listed = {c.fingerprint: c for c in registry.list_certificates(CertFilter())}
    lloc = listed[certs["old"].fingerprint].locations[0]
    assert lloc.role == "service" and lloc.stale_served_fingerprint == certs["new"].fingerprint
    assert lloc.stale_since == T0
    assert not lloc.details and lloc.processes == () and lloc.endpoint is None
    assert listed[certs["ca"].fingerprint].locations[0].role == "trust_anchor"


def test_stale_since_kept_while_the_same_certificate_is_served(registry, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1", "web1.example.com")
    old, new, other = certs["old"], certs["new"], certs["ep"]
    # the file has the new certificate, the port still serves the old one
    store_report(registry, "a1", header("r1", full=True, sequence=1), [stale_file(new, old.fingerprint)], now=T0)
    store_report(registry, "a1", header("r2", full=True, sequence=2), [stale_file(new, old.fingerprint)], now=T0 + H)
    loc = registry.get_certificate(new.fingerprint).locations[0]
    assert loc.stale_since == T0 and loc.last_seen == T0 + H

    (s,) = list(registry.discovery.list_stale())
    assert (s.hostname, s.path, s.file_fingerprint, s.served_fingerprint, s.endpoint, s.since) == (
        "web1.example.com", "/etc/nginx/tls/www.pem", new.fingerprint, old.fingerprint, "127.0.0.1:8443", T0)
    assert (s.process_name, s.pid, s.suggested_reload) == ("nginx", 4242, "nginx")

    # another certificate served: a new episode
    store_report(registry, "a1", header("r3", full=True, sequence=3), [stale_file(new, other.fingerprint)],
                 now=T0 + 2 * H)
    assert registry.get_certificate(new.fingerprint).locations[0].stale_since == T0 + 2 * H

    # reloaded: stale goes, and so does the flag
    store_report(registry, "a1", header("r4", full=True, sequence=4), [stale_file(new, None)], now=T0 + 3 * H)
    loc = registry.get_certificate(new.fingerprint).locations[0]
    assert loc.stale_served_fingerprint is None and loc.stale_since is None and loc.stale_endpoint is None
    assert list(registry.discovery.list_stale()) == []

    # stale again later: since the new sighting; the agent's own first sighting wins when it sends one
    store_report(registry, "a1", header("r5", full=True, sequence=5),
                 [stale_file(new, old.fingerprint, since=T0 + 3 * H + 5 * M)], now=T0 + 4 * H)
    assert registry.get_certificate(new.fingerprint).locations[0].stale_since == T0 + 3 * H + 5 * M


def test_stale_listing_by_agent_and_only_present(registry, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1", "web1.example.com")
    make_agent("b2", "web2.example.com", serial="b2b2")
    store_report(registry, "a1", header("r1", full=True, sequence=1), [stale_file(certs["new"], certs["old"].fingerprint)])
    store_report(registry, "b2", header("r1", full=True, sequence=1, hostname="web2.example.com"),
                 [stale_file(certs["new"], certs["ep"].fingerprint)])
    assert {s.agent_id for s in registry.discovery.list_stale()} == {"a1", "b2"}
    assert [s.served_fingerprint for s in registry.discovery.list_stale("b2")] == [certs["ep"].fingerprint]
    with pytest.raises(NotFound):
        list(registry.discovery.list_stale("zz9999"))
    # the file is gone from the host: no longer listed
    store_report(registry, "b2", header("r2", full=True, sequence=2, hostname="web2.example.com"), [], now=T0 + H)
    assert [s.agent_id for s in registry.discovery.list_stale()] == ["a1"]


def plan(**kw):  # type: ignore[no-untyped-def]
    kw.setdefault("targets", ["127.0.0.0/29"])
    kw.setdefault("ports", [443, 8443])
    return d.plan_scan(**kw)


def test_network_scan_lifecycle(registry, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    make_agent("agent-1", "web1.example.com")
    # the registry already knows an endpoint in the range: its names are sent as SNI
    store_report(registry, "agent-1", header("r1", full=True, sequence=1),
                 [endpoint_loc(certs["ep"], "127.0.0.3", 443, sni="mail.example.com")])
    scan = registry.discovery.start_scan("agent-1", plan(sni_names=["extra.example.com"]), "operator:olga",
                                         "inventory of the DMZ", T0)
    assert (scan.state, scan.agent_id, scan.hostname, scan.targets_total) == ("queued", "agent-1", "web1.example.com", 16)
    assert (scan.rate_per_second, scan.timeout_seconds, scan.concurrency) == (50.0, 3.0, 64)
    assert scan.sni_names == ("extra.example.com", "mail.example.com")
    (ev,) = registry.audit.list(action="netscan")
    assert (ev.actor, ev.action, ev.target, ev.reason) == ("operator:olga", "netscan.start", "agent:agent-1",
                                                           "inventory of the DMZ")
    assert ev.detail["scan_id"] == scan.scan_id and ev.detail["targets"] == ["127.0.0.0/29"]

    # one collector claims it; the next poll has nothing; a reconnect sends the unfinished again
    (sent,) = registry.discovery.claim_for_agent("agent-1", T0 + M)
    assert sent.scan_id == scan.scan_id and sent.state == "sent"
    assert registry.discovery.claim_for_agent("agent-1", T0 + M) == []
    assert [s.scan_id for s in registry.discovery.claim_for_agent("agent-1", T0 + 2 * M, resend=True)] == [scan.scan_id]
    assert registry.discovery.claim_for_agent("other", T0 + 2 * M, resend=True) == []

    # progress from another agent is refused
    make_agent("agent-2", "web2.example.com", serial="c3c3")
    with pytest.raises(PermissionDenied):
        registry.discovery.record_progress("agent-2", scan.scan_id, d.Progress("running", 16, 1), T0 + 3 * M)

    v = registry.discovery.record_progress("agent-1", scan.scan_id, d.Progress("running", 16, 8, 1, 0), T0 + 3 * M)
    assert (v.state, v.probed, v.tls_found, v.finished_at) == ("running", 8, 1, None)
    # a late, smaller report does not move counters back
    v = registry.discovery.record_progress("agent-1", scan.scan_id, d.Progress("running", 16, 5, 1, 0), T0 + 3 * M)
    assert v.probed == 8
    # the endpoints arrive in a report, then the final progress
    store_report(registry, "agent-1", header("r2", full=True, sequence=2), [
        endpoint_loc(certs["ep"], "127.0.0.3", 443, scan.scan_id, sni="mail.example.com"),
        endpoint_loc(certs["win"], "127.0.0.4", 8443, scan.scan_id)], now=T0 + 4 * M)
    v = registry.discovery.record_progress("agent-1", scan.scan_id, d.Progress("done", 16, 16, 2, 0, "2 TLS endpoints"),
                                           T0 + 5 * M)
    assert (v.state, v.probed, v.tls_found, v.finished_at, v.endpoints_in_registry, v.reason) == (
        "done", 16, 2, T0 + 5 * M, 2, "2 TLS endpoints")
    # final: a repeated or late report changes nothing
    assert registry.discovery.record_progress("agent-1", scan.scan_id, d.Progress("running", 16, 3), T0 + 6 * M) is None
    assert registry.discovery.get_scan(scan.scan_id[:8]).state == "done"
    assert registry.discovery.claim_for_agent("agent-1", T0 + 7 * M, resend=True) == []
    assert [e.action for e in registry.audit.list(action="netscan")] == ["netscan.finish", "netscan.start"]

    # the endpoint found by the scan shows where the certificate is
    loc = registry.get_certificate(certs["win"].fingerprint).locations[0]
    assert loc.endpoint["source"] == "network_scan" and loc.endpoint["scan_id"] == scan.scan_id


def test_network_scan_deadlines(registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("agent-1", "web1.example.com")
    queued = registry.discovery.start_scan("agent-1", plan(), "admin:root", "", T0)
    sent = registry.discovery.start_scan("agent-1", plan(targets=["127.0.1.1"]), "admin:root", "", T0)
    running = registry.discovery.start_scan("agent-1", plan(targets=["127.0.2.1"]), "admin:root", "", T0)
    reg = registry.discovery
    claimed = {s.scan_id for s in reg.claim_for_agent("agent-1", T0)}
    assert claimed == {queued.scan_id, sent.scan_id, running.scan_id}
    # put one back to queued to model an agent that never connected (only claims move state forward)
    from sqlalchemy import update

    from collector.registry.models.netscans import network_scans
    with registry.engine.begin() as conn:
        conn.execute(update(network_scans).where(network_scans.c.scan_id == queued.scan_id).values(state="queued"))
    reg.record_progress("agent-1", running.scan_id, d.Progress("running", 1, 0), T0 + M)

    assert reg.fail_overdue(T0 + 4 * M) == []
    failed = {s.scan_id: s for s in reg.fail_overdue(T0 + 5 * M)}
    assert set(failed) == {sent.scan_id}
    assert "did not answer within 5 min" in failed[sent.scan_id].reason
    assert failed[sent.scan_id].finished_at == T0 + 5 * M
    failed = {s.scan_id: s for s in reg.fail_overdue(T0 + 6 * M)}
    assert set(failed) == {running.scan_id} and "no progress from the agent for 5 min" in failed[running.scan_id].reason
    failed = {s.scan_id: s for s in reg.fail_overdue(T0 + H)}
    assert set(failed) == {queued.scan_id} and "did not connect" in failed[queued.scan_id].reason
    assert {s.state for s in reg.list_scans("agent-1")} == {"failed"}
    assert len(registry.audit.list(action="netscan.fail")) == 3
    # a failed scan stays failed whatever comes late
    assert reg.record_progress("agent-1", sent.scan_id, d.Progress("done", 1, 1, 1), T0 + H) is None


def test_network_scan_refusals(registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("agent-1", "web1.example.com")
    make_agent("agent-2", "web2.example.com", serial="d4d4")
    with pytest.raises(Ambiguous):
        registry.discovery.start_scan("agent-", plan(), "admin:root", "", T0)
    with pytest.raises(NotFound):
        registry.discovery.start_scan("nobody-here", plan(), "admin:root", "", T0)
    registry.revoke_agent("agent-2", "gone", T0)
    with pytest.raises(InvalidInput, match="revoked"):
        registry.discovery.start_scan("agent-2", plan(), "admin:root", "", T0)
    with pytest.raises(NotFound):
        registry.discovery.get_scan("0123456789")
    with pytest.raises(InvalidInput, match="at least 6"):
        registry.discovery.get_scan("012")
    assert registry.discovery.list_scans() == []
    assert registry.audit.list(action="netscan") == []


# -- renewal, auto-renewal and policy of discovered locations ------------------------------------


@pytest.fixture
def renewal(registry, make_agent, tmp_path):  # type: ignore[no-untyped-def]
    from collector.issuers.internal_ca import InternalCA
    from collector.services.renewal import RenewalService
    from collector.config.templates import load_templates

    from tests.helpers.authority import authorize  # the fixture's imports are local to it, as above

    make_agent("agent-1", "web1.example.com")
    authorize(registry, "**.example.com")
    templates = load_templates({"web": {"issuer": "internal", "allowed_san_patterns": ["*.example.com"]}})
    return RenewalService(registry, {"internal": InternalCA("internal", tmp_path / "ca")}, templates, "web", lambda: T0)


def test_renewal_refuses_endpoints_and_trust_anchors(registry, renewal, certs) -> None:  # type: ignore[no-untyped-def]
    from collector.registry.types import LocationSelector

    served, anchor = certs["ep"], certs["ca"]
    nginx = {**PROC, "listen": ["0.0.0.0:8443"]}
    file_loc = dataclasses.replace(location(certs["old"], "/etc/nginx/tls/mail.pem"), processes=[nginx])
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), [
        endpoint_loc(served, "127.0.0.5", 8443), file_loc,
        dataclasses.replace(location(anchor, "/etc/ssl/certs/ca-certificates.crt"), role="trust_anchor")])

    with pytest.raises(InvalidInput) as e:
        renewal.request(served.fingerprint, LocationSelector(), "", "admin:root", "")
    msg = str(e.value)
    assert "127.0.0.5:8443" in msg and "is a TLS endpoint" in msg
    assert "read from pem:/etc/nginx/tls/mail.pem" in msg, msg      # the process that listens there
    with pytest.raises(InvalidInput, match="trust anchors are not renewed"):
        renewal.request(anchor.fingerprint, LocationSelector(), "", "admin:root", "")
    assert registry.jobs.list() == []

    # the file location is renewed, and its job says which reload fits its service
    (job,) = renewal.request(certs["old"].fingerprint, LocationSelector(), "", "admin:root", "CAB 7")
    assert job.path == "/etc/nginx/tls/mail.pem"
    assert job.reason == "CAB 7"
    assert job.suggested_reload.text() == "nginx (nginx pid 4242, nginx.service uses this location)"


def test_renewal_of_a_certificate_also_served_renews_only_its_files(registry, renewal, certs) -> None:  # type: ignore[no-untyped-def]
    from collector.registry.types import LocationSelector

    cert = certs["old"]
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), [
        endpoint_loc(cert, "127.0.0.5", 443), location(cert, "/etc/ssl/www.pem")])
    jobs = renewal.request(cert.fingerprint, LocationSelector(), "", "admin:root", "")
    assert [(j.store_type, j.path, j.reason) for j in jobs] == [("pem", "/etc/ssl/www.pem", "renewal requested")]


def test_autorenew_and_policy_leave_trust_anchors_alone(registry, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    from collector.config.renewal import load_rule
    from collector.services import autorenew
    from collector.domain import policy
    from tests.helpers.registry_certs import issue

    make_agent("agent-1", "web1.example.com")
    expired_root = issue("Old Root", ca=True, days=10, not_before=T0 - dt.timedelta(days=30))
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), [
        dataclasses.replace(location(expired_root, "/etc/ssl/certs/ca-certificates.crt"), role="trust_anchor"),
        endpoint_loc(certs["ep"], "127.0.0.5", 443)])
    listed = list(registry.list_certificates(CertFilter()))
    rule = load_rule(1, {"template": "web", "days_before": 3650}, ["web"])
    planned = autorenew.plan_renewals(listed, [rule], T0)
    assert planned == []        # neither the anchor nor the endpoint: renewals happen at files and stores

    doc = policy.parse_policy('[global]\nexpired_installed = true\nforbidden_signature_algorithms = ["sha256"]\n'
                              'min_rsa_bits = 4096\n')
    root_view = next(c for c in listed if c.fingerprint == expired_root.fingerprint)
    (anchor_loc,) = root_view.locations
    rules = {f.rule for f in policy.evaluate(root_view, anchor_loc, None, doc, T0)}
    assert "expired_installed" not in rules and "forbidden_signature_algorithms" not in rules
    ep_view = next(c for c in listed if c.fingerprint == certs["ep"].fingerprint)
    ep_rules = {f.rule for f in policy.evaluate(ep_view, ep_view.locations[0], None, doc, T0)}
    assert "forbidden_signature_algorithms" in ep_rules     # endpoint-only certificates are judged


def test_trust_anchor_key_findings_recorded_not_notified(registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers.registry_certs import issue, rsa_key

    make_agent("agent-1", "web1.example.com")
    weak = issue("Weak Root", ca=True, key=rsa_key(1024))
    service = issue("weak.example.com", key=rsa_key(1024))
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), [
        dataclasses.replace(location(weak, "/etc/ssl/certs/ca-certificates.crt"), role="trust_anchor"),
        location(service, "/etc/ssl/weak.pem")])
    registry.policies.set_policy("[global]\nmin_rsa_bits = 2048\n", T0)
    told = []
    registry.policies.evaluate_all(T0, on_new_violation=told.append)
    found = {(v.fingerprint, v.rule) for v in registry.policies.list_violations(T0)}
    assert (weak.fingerprint, "min_rsa_bits") in found and (service.fingerprint, "min_rsa_bits") in found
    assert [n.fingerprint for n in told] == [service.fingerprint]


def test_stale_listing_with_owners_and_team_scope(registry, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1", "web1.example.com")
    other = dataclasses.replace(stale_file(certs["new"], certs["old"].fingerprint), path="/srv/db/tls/db.pem",
                                labels={})
    store_report(registry, "a1", header("r1", full=True, sequence=1),
                 [stale_file(certs["new"], certs["old"].fingerprint), other])
    registry.owners.create_owner("web-team", T0, contacts=["web@example.com"])
    registry.owners.add_rule("nginx", T0, owner="web-team", service="shop", path="/etc/nginx/**")
    everyone = {v.path: v for v in registry.discovery.stale_with_owners()}
    assert (everyone["/etc/nginx/tls/www.pem"].owner, everyone["/etc/nginx/tls/www.pem"].service) == ("web-team", "shop")
    assert everyone["/srv/db/tls/db.pem"].owner == ""
    team = [v.path for v in registry.discovery.stale_with_owners(team="web-team")]
    assert team == ["/etc/nginx/tls/www.pem"]
    assert list(registry.discovery.stale_with_owners("a1", team="db-team")) == []


def test_stale_listing_pages_in_episode_order(registry, make_agent, certs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from collector.registry.serving import ServingStore

    make_agent("a1", "web1.example.com")
    sinces = [T0 + 2 * H, T0, T0 + H, T0, T0 + H]        # ties on since are paged by row
    locs = [dataclasses.replace(stale_file(certs["new"], certs["old"].fingerprint, since=s), path=f"/etc/tls/{i}.pem")
            for i, s in enumerate(sinces)]
    store_report(registry, "a1", header("r1", full=True, sequence=1), locs)
    monkeypatch.setattr(ServingStore, "PAGE_SIZE", 2)
    got = [(v.since, v.path) for v in registry.discovery.list_stale()]
    assert len(got) == 5 and len(set(got)) == 5
    assert [s for s, _ in got] == sorted(sinces)


# -- reports and notifications: stale services, trust anchors left out --------------------------


def test_reports_show_stale_services_and_leave_trust_anchors_out(registry, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    from collector.reports import coverage, expiring
    from tests.helpers.registry_certs import issue

    make_agent("a1", "web1.example.com")
    old_root = issue("Old Root", ca=True, days=10)          # expires within the report's horizon
    store_report(registry, "a1", header("r1", full=True, sequence=1), [
        stale_file(certs["new"], certs["old"].fingerprint),
        dataclasses.replace(location(old_root, "/etc/ssl/certs/ca-certificates.crt"), role="trust_anchor")])
    registry.owners.create_owner("web-team", T0, contacts=["web@example.com"])
    registry.owners.add_rule("nginx", T0, owner="web-team", path="/etc/nginx/**")

    row = ("web1.example.com", "/etc/nginx/tls/www.pem", certs["new"].fingerprint, certs["old"].fingerprint,
           "127.0.0.1:8443", "2026-01-01T12:00:00Z", "web-team")
    for params in ({}, {"limit": "100"}):
        rep = expiring.build(registry, params, T0)
        secs = {s.title: s for s in rep.sections}
        assert secs["Stale services"].rows == [row]
        assert dict(rep.summary)["Stale services"] == 1
        listed = [r[-1] for s in rep.sections if s.title.startswith(("Within", "Expired")) for r in s.rows]
        assert old_root.fingerprint not in listed            # a trust anchor does not flood the report
        assert certs["new"].fingerprint in listed
    assert {s.title: s for s in expiring.build(registry, {}, T0, team="web-team").sections}[
        "Stale services"].rows == [row]
    assert {s.title: s for s in expiring.build(registry, {}, T0, team="db-team").sections}[
        "Stale services"].rows == []
    cov = coverage.build(registry, {}, T0)
    assert {s.title: s for s in cov.sections}["Stale services"].rows == [row]
    assert dict(cov.summary)["Stale services"] == 1


def test_stale_service_notified_once_per_episode(registry, db_url, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    from collector.domain import notices as dec
    from collector.services.notifier import Notifier
    from collector.config.notify import NotifySettings
    from collector.registry import Registry
    from tests.helpers.registry_notify_servers import http_server
    from tests.helpers.registry_certs import issue

    make_agent("a1", "web1.example.com")
    registry.owners.create_owner("web-team", T0, contacts=["web@example.com"])
    registry.owners.add_rule("nginx", T0, owner="web-team", path="/etc/nginx/**")
    anchor = issue("Expiring Root", ca=True, days=3)          # would cross every expiry threshold
    fresh = dataclasses.replace(stale_file(certs["new"], certs["old"].fingerprint))
    store_report(registry, "a1", header("r1", full=True, sequence=1), [
        fresh, dataclasses.replace(location(anchor, "/etc/nginx/trust/ca.pem"), role="trust_anchor")])

    gen = http_server()
    hsink, port = next(gen)
    try:
        cfg = NotifySettings.from_config({"notify": {"channel": [
            {"name": "hooks", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook"}]}})

        def told() -> list[dict]:
            return [n for _, body, _ in hsink.requests for n in body.get("notices", [])]

        # two collectors on one database: the episode is told once
        other = Registry.open(db_url)
        try:
            results = [Notifier(registry, cfg).run_once(T0 + H), Notifier(other, cfg).run_once(T0 + H)]
        finally:
            other.close()
        assert sum(r.notices for r in results) == 1
        (n,) = told()
        assert n["kind"] == dec.STALE_SERVICE and "127.0.0.1:8443" in n["title"]
        assert "suggested reload: nginx" in n["detail"] and n["fingerprint"] == certs["new"].fingerprint
        # the trust anchor expiring in 3 days is not told about
        assert not [x for x in told() if x["fingerprint"] == anchor.fingerprint]

        # a restart, the same episode seen again in a later report: nothing new
        store_report(registry, "a1", header("r2", full=True, sequence=2), [fresh], now=T0 + 2 * H)
        with Registry.open(db_url) as again:
            assert Notifier(again, cfg).run_once(T0 + 3 * H).notices == 0
        # reloaded (stale gone), then stale again: a new episode, told again
        store_report(registry, "a1", header("r3", full=True, sequence=3), [stale_file(certs["new"], None)],
                     now=T0 + 4 * H)
        assert Notifier(registry, cfg).run_once(T0 + 4 * H).notices == 0
        store_report(registry, "a1", header("r4", full=True, sequence=4), [fresh], now=T0 + 5 * H)
        assert Notifier(registry, cfg).run_once(T0 + 5 * H).notices == 1
        assert [x["kind"] for x in told()] == [dec.STALE_SERVICE, dec.STALE_SERVICE]
    finally:
        gen.close()


def test_discovery_is_netscans_and_serving_under_one_name(registry, make_agent, certs) -> None:  # type: ignore[no-untyped-def]
    """``registry.discovery``, the name callers knew, sees what ``registry.netscans`` and
    ``registry.serving`` hold, and acts on the same rows."""
    make_agent("agent-1", "web1.example.com")
    scan = registry.netscans.start_scan("agent-1", plan(), "operator:olga", "", T0)
    assert registry.discovery.get_scan(scan.scan_id) == registry.netscans.get_scan(scan.scan_id)
    (sent,) = registry.discovery.claim_for_agent("agent-1", T0 + M)
    assert sent.scan_id == scan.scan_id and registry.netscans.get_scan(scan.scan_id).state == "sent"
    store_report(registry, "agent-1", header("r1", full=True, sequence=1),
                 [stale_file(certs["new"], certs["old"].fingerprint)])
    stale = list(registry.serving.list_stale())
    assert [v.path for v in stale] == [v.path for v in registry.discovery.list_stale()] != []


def test_scan_result_lists_endpoints_whatever_source_recorded_them_first(  # type: ignore[no-untyped-def]
        registry, make_agent, certs) -> None:
    """A scan that found endpoints the agent already probes as its listeners lists them (endpoint.scan_ids);
    another agent's location naming the scan is not this scan's result (agents are untrusted)."""
    make_agent("agent-1", "web1.example.com")
    make_agent("agent-2", "web2.example.com", serial="a2a2")
    scan = registry.discovery.start_scan("agent-1", plan(), "admin:root", "", T0)
    listener = endpoint_loc(certs["ep"], "127.0.0.3", 443, sni="mail.example.com")
    listener = dataclasses.replace(listener, endpoint={**listener.endpoint, "scan_ids": [scan.scan_id, "older"]})
    own = endpoint_loc(certs["win"], "127.0.0.4", 8443, scan.scan_id)
    unrelated = endpoint_loc(certs["old"], "127.0.0.5", 443)              # a listener the scan did not find
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), [listener, own, unrelated], now=T0 + M)
    forged = endpoint_loc(certs["new"], "10.9.9.9", 443, scan.scan_id)
    store_report(registry, "agent-2", header("r1", full=True, sequence=1, hostname="web2.example.com"), [forged],
                 now=T0 + M)
    v = registry.discovery.get_scan(scan.scan_id)
    assert v.endpoints_in_registry == 2
    assert [(e.endpoint, e.sni, e.source, e.fingerprint) for e in v.endpoints] == [
        ("127.0.0.3:443", "mail.example.com", "local_listener", certs["ep"].fingerprint),
        ("127.0.0.4:8443", "", "network_scan", certs["win"].fingerprint)]
    assert v.endpoints[0].subject == "CN=mail.example.com" and v.endpoints[0].protocol == "TLSv1.3"
    assert [s.endpoints_in_registry for s in registry.discovery.list_scans()] == [2]
    assert registry.discovery.list_scans()[0].endpoints == ()                 # lists stay light
    # junk in the agent-reported facts is ignored, not an error
    junk = dataclasses.replace(listener, endpoint={**listener.endpoint, "scan_ids": "not-a-list", "scan_id": 7})
    store_report(registry, "agent-1", header("r2", full=True, sequence=2), [junk, own], now=T0 + 2 * M)
    assert [e.endpoint for e in registry.discovery.get_scan(scan.scan_id).endpoints] == ["127.0.0.4:8443"]
