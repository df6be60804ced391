"""The metrics as a monitoring team sees them: a real Prometheus server scrapes a running collector
(``[metrics]`` with a bearer token) and an agent in exporter mode while nginx is renewed through the
internal CA; the expiry gauges, the per-certificate series and the job counters read back through
Prometheus's HTTP API have the values the renewal implies."""
from __future__ import annotations

import datetime as dt
import pathlib
import urllib.error
import urllib.request

import pytest
from cryptography import x509

from tests.conftest import free_port, need_tools
from tests.e2e.harness import Agent, Collector
from tests.e2e.test_renewal import COLLECTOR_EXTRA, Service, agent_config, old_site, registry_fingerprint, wait_for
from tests.helpers.install_sites import Nginx, nginx_binary, served_fingerprint
from tests.helpers.prometheus_server import Prometheus, ScrapeTarget, prometheus_binary

pytestmark = pytest.mark.slow


def not_after(pem: pathlib.Path) -> float:
    return x509.load_pem_x509_certificate(pem.read_bytes()).not_valid_after_utc.timestamp()


@pytest.fixture()
def monitored(tmp_path: pathlib.Path):
    need_tools("openssl")
    if nginx_binary() is None or prometheus_binary() is None:
        pytest.skip("needs nginx and prometheus (packaging/dev/setup.sh installs them)")
    cert, key = old_site(tmp_path / "site")
    nginx = Nginx(nginx_binary(), tmp_path / "nginx", cert, key)
    token = tmp_path / "metrics.token"
    token.write_text("scrape-secret-0123456789\n")
    c_metrics, a_metrics = free_port(), free_port()
    c = Collector(tmp_path / "collector", extra_tables=COLLECTOR_EXTRA + (
        f'\n[metrics]\nlisten = "127.0.0.1:{c_metrics}"\nbearer_token_file = "{token}"\nrefresh = "1s"\nowner_refresh = "1s"\n'))
    c.start()
    assert c.init_admin().code == 0
    c.authorize("*.example.test")          # since issue 11 only granted names are issued
    agent = Agent(tmp_path / "agent", agent_config(tmp_path / "site", nginx, nginx.reload_command)
                  + f'\n[metrics]\nlisten = "127.0.0.1:{a_metrics}"\n')
    agent.write_config(hostname="web-01")
    agent.config.write_text(agent.config.read_text().replace("[agent]\n", '[agent]\nscan_interval = "2s"\n', 1))
    assert agent.enroll(c, c.token()).code == 0
    svc = Service(agent)
    prom = Prometheus(tmp_path / "prometheus", [ScrapeTarget("collector", f"127.0.0.1:{c_metrics}", token),
                                                ScrapeTarget("agent", f"127.0.0.1:{a_metrics}")])
    prom.start()
    try:
        yield c, nginx, prom, cert, c_metrics
    finally:
        prom.stop()
        svc.stop()
        c.stop()
        nginx.stop()


def settled(prom: Prometheus, expr: str, pred, what: str = "", timeout: float = 30):  # noqa: ANN001, ANN201
    """The value of ``expr`` once ``pred`` holds for it. (On a loaded machine a scrape may time out; Prometheus
    then marks the target's series stale and an instant query finds none until the next scrape.)"""
    return wait_for(lambda: (lambda v: (v,) if v is not None and pred(v) else None)(prom.value(expr)),
                    timeout=timeout, what=what or expr)[0]


def test_prometheus_sees_expiry_and_the_renewal(monitored) -> None:
    c, nginx, prom, cert, c_metrics = monitored
    old = wait_for(lambda: registry_fingerprint(c), what="the first report")
    old_not_after = not_after(cert)

    # the collector refuses a scrape without the token; Prometheus, configured with it, scrapes both
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{c_metrics}/metrics", timeout=5)
    assert refused.value.code == 401
    wait_for(lambda: prom.targets_up() == {"collector": "up", "agent": "up"}, timeout=30, what="both targets up")

    # before: one certificate of 20 days in the 30-day window, seen by the collector and by the host
    wait_for(lambda: prom.value('certfleet_certificates{window="30d"}') == 1, timeout=30,
             what="the collector's expiry gauge")
    settled(prom, 'certfleet_locations{window="30d"}', lambda v: v == 1)
    settled(prom, 'certfleet_certificates{window="90d"}', lambda v: v == 0)
    settled(prom, 'certfleet_agents{status="enrolled"}', lambda v: v == 1)
    settled(prom, "certfleet_agents_connected", lambda v: v == 1)
    settled(prom, 'certfleet_locations_by_owner{owner="(none)",environment="test",window="30d"}', lambda v: v == 1)
    series = wait_for(lambda: prom.query(f'x509_cert_not_after{{filepath="{cert}"}}'), timeout=30,
                      what="the agent's per-certificate series")
    assert len(series) == 1
    labels = series[0]["metric"]
    assert (labels["store_type"], labels["subject_CN"], labels["filename"]) == ("pem", "www.example.test", "cert.pem")
    assert float(series[0]["value"][1]) == old_not_after
    settled(prom, 'certfleet_renewals_total{outcome="verified"}', lambda v: v == 0)
    settled(prom, "certfleet_db_connections_opened_total", lambda v: True)
    settled(prom, 'sum(certfleet_scheduler_lease_held{task="policy.evaluate"})', lambda v: True)
    settled(prom, 'certfleet_scheduler_runs_total{task="policy.evaluate",outcome="ok"}', lambda v: v >= 1)
    settled(prom, "certfleet_registry_up", lambda v: v == 1)
    settled(prom, 'sum(certfleet_grpc_server_handled_total{method="/certfleet.v1.AgentService/Report",code="OK"})', lambda v: v >= 1)

    # the renewal, as a user runs it
    r = c.cli("renew", old[:12], "--wait", "--timeout", "60")
    assert r.code == 0 and "verified" in r.out, r.out + r.err
    new_fp = c.cli("jobs", "show", r.out.split()[1], "--format", "json").json()["new_fingerprint"]
    assert served_fingerprint(nginx.port) == new_fp
    new_not_after = not_after(cert)
    assert new_not_after - dt.datetime.now(dt.timezone.utc).timestamp() > 80 * 86400   # the template's 90 days

    # after: the counters and gauges say what happened, through Prometheus
    wait_for(lambda: prom.value('certfleet_renewals_total{outcome="verified"}') == 1, timeout=30,
             what="the collector's renewal counter")
    settled(prom, 'certfleet_renewals_total{outcome="rolled_back"}', lambda v: v == 0)
    settled(prom, 'certfleet_renewals_total{outcome="failed"}', lambda v: v == 0)
    settled(prom, 'certfleet_renewal_duration_seconds_count{outcome="verified"}', lambda v: v == 1)
    settled(prom, 'certfleet_jobs{state="verified"}', lambda v: v == 1)
    settled(prom, 'certfleet_jobs{state="stuck"}', lambda v: v == 0)
    settled(prom, 'certfleet_agent_jobs_total{state="verified"}', lambda v: v == 1)
    # the agent reports the new certificate: it moves from the 30-day window to the 90-day one
    wait_for(lambda: prom.value('certfleet_certificates{window="90d"}') == 1, timeout=60,
             what="the new certificate in the 90-day window")
    settled(prom, 'certfleet_certificates{window="30d"}', lambda v: v == 0)
    wait_for(lambda: prom.value(f'x509_cert_not_after{{filepath="{cert}"}}') == new_not_after, timeout=30,
             what="the host's series to show the new not_after")
    settled(prom, f'x509_cert_not_before{{filepath="{cert}"}}', lambda v: v < new_not_after)
    settled(prom, "certfleet_agent_last_report_timestamp_seconds", lambda v: v > 0)
    settled(prom, 'sum(certfleet_reports_ingested_total{outcome="stored"})', lambda v: v >= 2)
    # what the shipped expiry alerts look at is 0 for this fleet: nothing expired or expiring within 14 days
    settled(prom, 'max(certfleet_certificates{window=~"expired|7d|14d"})', lambda v: v == 0)
