"""Auto-renewal against the registry (SQLite and PostgreSQL): reports in, renewal jobs out."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

import pytest
from collector.services import autorenew
from collector.services.autorenew import AutoRenewer, AutoRule
from collector.issuers.internal_ca import InternalCA
from collector.domain.jobstates import MaintenanceWindow
from collector.registry import Registry
from collector.services.renewal import RenewalService
from collector.config.templates import load_template
from tests.helpers.authority import authorize
from tests.helpers.registry_certs import T0, Issued, header, leaf, location, root_ca, store_report

DAY = dt.timedelta(days=1)
NOT_BEFORE = T0 - DAY          # leaf(): 90 days from here; two thirds: T0 + 59 days
DUE = T0 + 70 * DAY
NOT_YET = T0 + 40 * DAY


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def renewer(registry: Registry, tmp_path: Path, clock: Clock, *rules: AutoRule, **kw: Any) -> AutoRenewer:
    tpl = load_template("web", {"issuer": "internal", "validity": "90d", "allowed_san_patterns": ["**.example.com"]})
    service = RenewalService(registry, {"internal": InternalCA("internal", tmp_path / "ca")}, {"web": tpl}, "web", clock)
    authorize(registry, "**.example.com")
    return AutoRenewer(registry, service, list(rules) or [AutoRule(index=1, template="web", jitter=0)], clock, **kw)


@pytest.fixture
def root() -> Issued:
    return root_ca()


def report(registry: Registry, agent_id: str, hostname: str, *locations: Any) -> None:
    store_report(registry, agent_id, header(f"r-{agent_id}", full=True, sequence=1, hostname=hostname),
                 list(locations))


def auto_jobs(registry: Registry, fingerprint: str) -> list[Any]:
    return [j for j in registry.jobs.list(fingerprint=fingerprint) if j.requested_by == "auto-renew"]


def test_a_due_certificate_gets_one_job_and_repeating_adds_none(
        registry: Registry, make_agent: Callable[..., Any], root: Issued, tmp_path: Path) -> None:
    make_agent("a1", "web1.example.com")
    www = leaf("www.example.com", root)
    report(registry, "a1", "web1.example.com",
           location(root, "/etc/ssl/ca.pem"),                                  # a CA: never auto-renewed
           location(www, "/etc/nginx/site.pem", has_private_key=True, key_match="matches"),
           location(www, "/etc/nginx/other.pem", chain_index=1))              # inside a chain: skipped
    clock = Clock(DUE)
    woken: list[str] = []
    auto = renewer(registry, tmp_path, clock, notify=woken.append)

    assert auto.run_once() == 1
    (job,) = auto_jobs(registry, www.fingerprint)
    assert (job.agent_id, job.store_type, job.path, job.chain_index, job.template, job.state) == (
        "a1", "pem", "/etc/nginx/site.pem", 0, "web", "requested")
    assert job.reason == f"auto-renewal: 2/3 of lifetime passed (expires {www.cert.not_valid_after_utc.date()}, rule 1)"
    assert woken == ["a1"]
    assert auto_jobs(registry, root.fingerprint) == []

    clock.now += dt.timedelta(minutes=10)
    assert auto.run_once() == 0                      # the running job is the location's job
    assert auto.run_once() == 0
    assert [j.job_id for j in auto_jobs(registry, www.fingerprint)] == [job.job_id]
    assert registry.jobs.count() == 1 and woken == ["a1"]


def test_after_a_failed_job_the_location_waits_retry_after(
        registry: Registry, make_agent: Callable[..., Any], root: Issued, tmp_path: Path) -> None:
    make_agent("a1", "web1.example.com")
    www = leaf("www.example.com", root)
    report(registry, "a1", "web1.example.com", location(www, "/etc/nginx/site.pem"))
    clock = Clock(DUE)
    auto = renewer(registry, tmp_path, clock, retry_after=dt.timedelta(hours=6))
    assert auto.run_once() == 1
    (job,) = auto_jobs(registry, www.fingerprint)
    registry.jobs.advance(job.job_id, "failed", DUE + dt.timedelta(minutes=5), reason="agent said no")

    clock.now = DUE + dt.timedelta(hours=6)          # 5 h 55 min after it failed
    assert auto.run_once() == 0
    clock.now = DUE + dt.timedelta(hours=6, minutes=6)
    assert auto.run_once() == 1
    assert len(auto_jobs(registry, www.fingerprint)) == 2


def test_a_certificate_not_yet_due_gets_none(
        registry: Registry, make_agent: Callable[..., Any], root: Issued, tmp_path: Path) -> None:
    make_agent("a1", "web1.example.com")
    www = leaf("www.example.com", root)
    report(registry, "a1", "web1.example.com", location(www, "/etc/nginx/site.pem"))
    assert renewer(registry, tmp_path, Clock(NOT_YET)).run_once() == 0
    assert registry.jobs.count() == 0


def test_outside_the_window_none_inside_one(
        registry: Registry, make_agent: Callable[..., Any], root: Issued, tmp_path: Path) -> None:
    make_agent("a1", "web1.example.com")
    www = leaf("www.example.com", root)
    report(registry, "a1", "web1.example.com", location(www, "/etc/nginx/site.pem"))
    rule = AutoRule(index=1, template="web", jitter=0, window=MaintenanceWindow.parse("sat,sun 22:00-04:00 UTC"))
    saturday = dt.datetime(2026, 3, 14, tzinfo=dt.timezone.utc)        # past the renewal point (T0 + 59 days)
    assert saturday.weekday() == 5
    clock = Clock(saturday + dt.timedelta(hours=12))
    auto = renewer(registry, tmp_path, clock, rule)
    assert auto.run_once() == 0
    assert registry.jobs.count() == 0
    clock.now = saturday + dt.timedelta(hours=27)                      # Sunday 03:00: Saturday's window
    assert auto.run_once() == 1


def test_rules_choose_locations_and_refusals_do_not_stop_the_rest(
        registry: Registry, make_agent: Callable[..., Any], root: Issued, tmp_path: Path) -> None:
    make_agent("a1", "web1.example.com")
    make_agent("a2", "db1.example.com")
    www = leaf("www.example.com", root)
    foreign = leaf("www.example.org", root)          # the template allows *.example.com only
    report(registry, "a1", "web1.example.com",
           location(foreign, "/etc/nginx/a-foreign.pem", labels={"service": "nginx"}),
           location(www, "/etc/nginx/site.pem", labels={"service": "nginx"}),
           location(www, "/etc/postfix/site.pem", labels={"service": "postfix"}))
    report(registry, "a2", "db1.example.com", location(www, "/etc/nginx/site.pem", labels={"service": "nginx"}))
    rules = (AutoRule(index=1, template="web", jitter=0, match={"service": "nginx"}, hosts=("web*",),
                      paths=("/etc/nginx/**",)),)
    auto = renewer(registry, tmp_path, Clock(DUE), *rules)
    assert auto.run_once() == 1
    assert [(j.agent_id, j.path) for j in auto_jobs(registry, www.fingerprint)] == [("a1", "/etc/nginx/site.pem")]
    assert auto_jobs(registry, foreign.fingerprint) == []
    assert auto.run_once() == 0                       # the refusal is repeated, quietly


def test_the_fleet_is_planned_page_by_page(
        registry: Registry, make_agent: Callable[..., Any], root: Issued, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_agent("a1", "web1.example.com")
    certs = [leaf(f"h{i}.example.com", root, days=90 + i) for i in range(7)]   # two thirds: T0 + 59..63 days
    report(registry, "a1", "web1.example.com", *[location(c, f"/etc/ssl/h{i}.pem") for i, c in enumerate(certs)])
    monkeypatch.setattr(registry, "PAGE_SIZE", 3)
    auto = renewer(registry, tmp_path, Clock(DUE))
    seen: list[int] = []
    real = autorenew.plan_renewals

    def spy(page: list[Any], *a: Any) -> Any:
        seen.append(len(page))
        return real(page, *a)

    monkeypatch.setattr("collector.services.autorenew.plan_renewals", spy)
    assert auto.run_once() == 7
    assert seen == [3, 3, 1]
    assert {j.old_fingerprint for j in registry.jobs.list(limit=100)} == {c.fingerprint for c in certs}
