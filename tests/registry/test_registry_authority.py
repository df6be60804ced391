"""Issuance authority on a real registry (SQLite and PostgreSQL) with a real internal CA: host identity
fixed at enrollment, grants and allows, renewals through the decision, approvals with four eyes,
denial and expiry, auto-renewal that opens one approval per location, and CSRs asking for other names."""
from __future__ import annotations

import datetime as dt
import pathlib

import pytest
from cryptography import x509

from agent.keys import make_csr, new_key
from collector import errors
from collector.config.templates import load_templates
from collector.domain.approvals import ApprovalPolicy
from collector.domain.autorules import AutoRule
from collector.domain.jobstates import AgentJobUpdate
from collector.issuers.internal_ca import InternalCA
from collector.registry.types import LocationSelector
from collector.services.autorenew import AutoRenewer
from collector.services.renewal import RenewalService
from tests.helpers.registry_certs import T0, header, host, leaf, location, root_ca, store_report

DAY = dt.timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def actions(registry, action: str) -> list:  # noqa: ANN001
    return registry.audit.list(action=action, limit=50)


def test_a_bound_token_fixes_the_name_and_later_reports_are_only_drift(registry) -> None:  # noqa: ANN001
    registry.agents.create_token("ab" * 32, T0 + DAY, "web", T0, actor="admin:a", bound_host="Web-01.example.com")
    registry.enroll_agent("ab" * 32, "a1", host("payments.example.com"), "01", T0 + 30 * DAY, T0)
    a = registry.get_agent("a1")
    assert (a.hostname, a.reported_hostname, a.drift) == ("web-01.example.com", "payments.example.com",
                                                          "payments.example.com")
    # what the agent reports later changes nothing but the drift shown
    registry.touch_agent("a1", host("api.example.com"), T0 + DAY)
    store_report(registry, "a1", header("r1", full=True, sequence=1, hostname="billing.example.com"), [])
    a = registry.get_agent("a1")
    assert (a.hostname, a.drift) == ("web-01.example.com", "billing.example.com")
    assert registry.authority.host("a1").name == "web-01.example.com"
    # an admin's rename is the only way to change it, audited
    assert registry.authority.rename_agent("a1", "billing.example.com", "admin:a", T0 + DAY) == "web-01.example.com"
    assert registry.get_agent("a1").drift == ""
    (ev,) = actions(registry, "agent.rename")
    assert ev.detail["from"] == "web-01.example.com" and ev.detail["to"] == "billing.example.com"
    # rights-deciding labels live on the collector; the agent's own labels decide nothing
    labels = registry.authority.label_agent("a1", {"tier": "web"}, [], "admin:a", T0)
    assert labels == {"tier": "web"} and registry.authority.host("a1").labels == {"tier": "web"}
    assert actions(registry, "agent.label")


def test_grants_refuse_bad_patterns_and_overlaps_unless_an_admin_says_which_wins(registry, make_agent) -> None:  # noqa: ANN001
    auth = registry.authority
    with pytest.raises(errors.InvalidInput, match="top-level domain"):
        auth.grant("web", "*.com", "admin:a", T0)
    g = auth.grant("web", "*.Shop.example.com", "admin:a", T0)
    assert g.pattern == "*.shop.example.com" and auth.grant("web", "*.shop.example.com", "admin:a", T0) == g
    with pytest.raises(errors.InvalidInput, match="overlaps grants of other owners.*held by web.*--wins"):
        auth.grant("pay", "pay.shop.example.com", "admin:a", T0)
    w = auth.grant("pay", "pay.shop.example.com", "admin:a", T0, wins=True)
    assert w.wins and [x.owner for x in auth.grants()] == ["web", "pay"]
    (ev,) = [e for e in actions(registry, "names.grant") if e.detail["owner"] == "pay"]
    assert ev.detail["overrides"] == [g.id]
    with pytest.raises(errors.InvalidInput, match="exactly one"):
        auth.allow("*.shop.example.com", "admin:a", T0, hosts="web-*", label="a=b")
    with pytest.raises(errors.NotFound):
        auth.allow("*.shop.example.com", "admin:a", T0, agent_id="nobody")
    al = auth.allow("*.shop.example.com", "admin:a", T0, hosts="web-*")
    auth.revoke("allow", al.id, "admin:a", T0, "no longer")
    auth.revoke("grant", w.id, "admin:a", T0)
    assert auth.allows() == [] and [x.id for x in auth.grants()] == [g.id]
    assert len(actions(registry, "names.revoke")) == 2


@pytest.fixture
def fleet(registry, make_agent, tmp_path: pathlib.Path):  # noqa: ANN001, ANN201
    """The victim (payments host) and a rogue host that reports the victim's certificate."""
    make_agent("pay", "pay-01.example.com", now=T0)
    make_agent("rogue", "build-07.example.com", now=T0)
    root = root_ca()
    cert = leaf("payments.example.com", root, sans=[x509.DNSName("payments.example.com"),
                                                    x509.DNSName("api.example.com")])
    for agent_id in ("pay", "rogue"):
        store_report(registry, agent_id, header(f"r-{agent_id}", full=True, sequence=1), [location(cert, "/etc/tls/p.pem")])
    registry.authority.grant("payments", "payments.example.com", "admin:a", T0)
    registry.authority.grant("payments", "api.example.com", "admin:a", T0)
    for p in ("payments.example.com", "api.example.com"):
        registry.authority.allow(p, "admin:a", T0, hosts="pay-*")
    templates = load_templates({"web": {"issuer": "internal", "allowed_san_patterns": ["**.example.com"]}})
    clock = Clock()
    svc = RenewalService(registry, {"internal": InternalCA("internal", tmp_path / "ca")}, templates, "web", clock)
    return svc, cert, clock


def _csr(*names: str) -> bytes:
    return make_csr(new_key("ec-p256"), names[0], list(names))


def test_a_certificate_on_several_hosts_renews_only_where_authorized(registry, fleet) -> None:  # noqa: ANN001
    svc, cert, _ = fleet
    jobs = {j.agent_id: j for j in svc.request(cert.fingerprint, LocationSelector(), "", "admin:alice", "rotate")}
    assert jobs["pay"].state == "requested" and jobs["rogue"].state == "awaiting_approval"
    (appr,) = registry.approvals.list()
    assert appr.job_id == jobs["rogue"].job_id and appr.owner == "payments"
    assert any("no allow lets build-07.example.com receive it" in r for r in appr.reasons)
    # nothing is sent to the rogue host, and its reports about the job change nothing
    assert svc.commands_for("rogue") == []
    svc.on_update("rogue", AgentJobUpdate(job_id=jobs["rogue"].job_id, state="csr_ready",
                                          csr_der=_csr("payments.example.com", "api.example.com")))
    assert registry.jobs.get(jobs["rogue"].job_id).state == "awaiting_approval"
    assert registry.jobs.get(jobs["rogue"].job_id).certificate_der == b""
    # an operator's retry does not stand in for an approval
    with pytest.raises(errors.CollectorError, match="awaits approval"):
        registry.jobs.retry(jobs["rogue"].job_id, T0, "admin:alice")
    (ev,) = actions(registry, "approval.request")
    assert ev.actor == "admin:alice" and ev.detail["job_id"] == jobs["rogue"].job_id


def test_four_eyes_approve_and_deny(registry, fleet) -> None:  # noqa: ANN001
    svc, cert, clock = fleet
    (job,) = svc.request(cert.fingerprint, LocationSelector(agent_id="rogue"), "", "admin:alice", "rotate")
    appr = registry.approvals.get(job.job_id)
    with pytest.raises(errors.PermissionDenied, match="four eyes"):
        registry.approvals.decide(appr.approval_id, True, "admin:alice", "mine", T0)
    (refused,) = actions(registry, "approval.refused")
    assert refused.actor == "admin:alice"
    assert registry.jobs.get(job.job_id).state == "awaiting_approval"
    with pytest.raises(errors.InvalidInput, match="needs a reason"):
        registry.approvals.decide(appr.approval_id[:8], False, "approver:bob", "", T0)
    done = registry.approvals.decide(appr.approval_id[:8], False, "approver:bob", "not this host", T0)
    assert (done.state, done.decided_by) == ("denied", "approver:bob")
    assert registry.jobs.get(job.job_id).state == "denied"
    with pytest.raises(errors.InvalidInput, match="already denied by approver:bob"):
        registry.approvals.decide(appr.approval_id, True, "approver:carol", "", T0)
    # asked again and approved: the job starts, and issues
    (job2,) = svc.request(cert.fingerprint, LocationSelector(agent_id="rogue"), "", "admin:alice", "again")
    ok = registry.approvals.decide(registry.approvals.get(job2.job_id).approval_id, True, "approver:bob", "checked", T0)
    assert ok.state == "approved"
    j = registry.jobs.get(job2.job_id)
    assert (j.state, j.attempts) == ("requested", 0) and j.deadline > T0
    assert [c.job_id for c in svc.commands_for("rogue")] == [job2.job_id]
    assert {e.action for e in registry.audit.list(action="approval", limit=20)} >= {
        "approval.request", "approval.deny", "approval.approve", "approval.refused"}


def test_pending_approvals_expire(registry, fleet) -> None:  # noqa: ANN001
    svc, cert, clock = fleet
    (job,) = svc.request(cert.fingerprint, LocationSelector(agent_id="rogue"), "", "admin:alice", "rotate")
    assert registry.approvals.get(job.job_id).expires_at == T0 + 7 * DAY
    assert registry.jobs.mark_stuck(T0 + 2 * DAY) == []          # waiting is not being stuck
    assert registry.approvals.expire(T0 + 6 * DAY) == []
    (gone,) = registry.approvals.expire(T0 + 7 * DAY + dt.timedelta(seconds=1))
    assert gone.state == "expired" and registry.jobs.get(job.job_id).state == "expired"
    assert actions(registry, "approval.expire")
    # a job cancelled while it waited leaves nothing to approve: the approval closes, saying why
    (job2,) = svc.request(cert.fingerprint, LocationSelector(agent_id="rogue"), "", "admin:alice", "again")
    registry.jobs.cancel(job2.job_id, T0, "admin:alice")
    closed = registry.approvals.decide(job2.job_id, True, "approver:bob", "ok", T0)
    assert (closed.state, closed.decision_reason) == ("expired", "the job ended cancelled before a decision")
    assert registry.jobs.get(job2.job_id).state == "cancelled"


def test_auto_renewal_of_a_rogue_report_opens_one_approval_never_a_flood(registry, fleet) -> None:  # noqa: ANN001
    svc, cert, clock = fleet
    auto = AutoRenewer(registry, svc, [AutoRule(index=1, template="web", jitter=0)], clock)
    clock.now = cert.cert.not_valid_after_utc - 5 * DAY
    auto.run_once()
    by_agent = {j.agent_id: j for j in registry.jobs.list(limit=20)}
    assert by_agent["pay"].state == "requested" and by_agent["rogue"].state == "awaiting_approval"
    (appr,) = registry.approvals.list()
    registry.approvals.decide(appr.approval_id, False, "admin:root", "rogue report", clock.now)
    for hours in (1, 30, 60):
        clock.now += dt.timedelta(hours=hours)
        auto.run_once()
    assert len(registry.approvals.list(state=None)) == 1
    assert [j.state for j in registry.jobs.list(limit=20) if j.agent_id == "rogue"] == ["denied"]


def test_a_csr_asking_for_other_names_than_the_job_is_refused(registry, fleet) -> None:  # noqa: ANN001
    svc, cert, _ = fleet
    (job,) = svc.request(cert.fingerprint, LocationSelector(agent_id="pay"), "", "admin:alice", "rotate")
    svc.commands_for("pay")
    svc.on_update("pay", AgentJobUpdate(job_id=job.job_id, state="csr_ready",
                                        csr_der=_csr("payments.example.com", "api.example.com", "evil.example.com")))
    j = registry.jobs.get(job.job_id)
    assert j.state == "failed" and j.certificate_der == b""
    assert "asks for evil.example.com which the job does not name" in j.events[-1].reason


def test_the_owner_roles_team_is_the_team_holding_the_names(registry, fleet) -> None:  # noqa: ANN001
    svc, cert, _ = fleet
    with pytest.raises(errors.PermissionDenied, match="team team-b.*its team.s certificates.*held by payments"):
        svc.request(cert.fingerprint, LocationSelector(agent_id="rogue"), "", "owner:bob", "mine", team="team-b")
    assert registry.jobs.list(limit=5) == []
    jobs = svc.request(cert.fingerprint, LocationSelector(agent_id="pay"), "", "owner:pat", "ok", team="payments")
    assert [j.state for j in jobs] == ["requested"]


def test_trust_on_first_sight_issues_unheld_names_but_never_held_ones(registry, fleet, tmp_path) -> None:  # noqa: ANN001
    _, cert, clock = fleet
    templates = load_templates({"web": {"issuer": "internal", "allowed_san_patterns": ["**.example.com"]}})
    pilot = RenewalService(registry, {"internal": InternalCA("internal", tmp_path / "ca2")}, templates, "web", clock,
                           approvals=ApprovalPolicy(trust_on_first_sight=True))
    other = leaf("new.example.com", root_ca())
    store_report(registry, "rogue", header("r2", full=False, sequence=2, base=1), [location(other, "/n.pem")])
    assert [j.state for j in pilot.request(other.fingerprint, LocationSelector(), "", "admin:a", "")] == ["requested"]
    (held,) = pilot.request(cert.fingerprint, LocationSelector(agent_id="rogue"), "", "admin:a", "")
    assert held.state == "awaiting_approval"


def test_approvers_are_told_once_through_the_channels_and_expiry_is_swept(registry, fleet) -> None:  # noqa: ANN001
    from collector.config.notify import NotifySettings  # the notification pieces only this test needs
    from collector.services.approvals import ApprovalService
    from collector.services.notifier import Notifier
    from tests.helpers.registry_notify_servers import smtp_server

    svc, cert, clock = fleet
    registry.owners.create_owner("security", T0, contacts=["approvers@example.com"])
    servers = smtp_server()
    sink, port = next(servers)
    try:
        settings = NotifySettings.from_config({"notify": {"channel": [
            {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": port, "from": "certfleet@example.com",
             "to": ["pki@example.com"]}]}})
        approvals = ApprovalService(registry, clock, Notifier(registry, settings, clock), "security")
        (job,) = svc.request(cert.fingerprint, LocationSelector(agent_id="rogue"), "", "admin:alice", "rotate")
        assert approvals.sweep() == 0
        approvals.sweep()                                     # told once, however often it runs
        (m,) = sink.messages
        assert m["to"] == ["approvers@example.com"]
        assert "payments.example.com" in m["body"] and "build-07.example.com" in m["body"]
        assert "no allow lets build-07.example.com receive it" in m["body"]
        clock.now = T0 + 8 * DAY
        assert approvals.sweep() == 1
        assert registry.jobs.get(job.job_id).state == "expired"
    finally:
        servers.close()
