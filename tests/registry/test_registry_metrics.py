"""The collector's fleet gauges (collector/metrics/fleet.py) on SQLite and PostgreSQL: what a scrape of
``/metrics`` shows for a registry with known content, through the real prometheus_client exposition
and parser, and that the label sets stay bounded however many certificates there are."""
from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.metrics.fleet import FleetCollector, expiry_counts, owner_counts, violation_counts
from collector.metrics.instruments import PromRecorder, watch_engine
from collector.registry.types import LocationSelector
from tests.helpers.registry_certs import T0, header, leaf, location, root_ca, store_report

NOW = T0


def scrape(prom: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape, parsed back from the text format."""
    out = {}
    for fam in text_string_to_metric_families(generate_latest(prom).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def fleet(registry, connected: int = 0) -> tuple[CollectorRegistry, PromRecorder]:  # noqa: ANN001
    prom = CollectorRegistry()
    rec = PromRecorder(prom)
    parts = expiry_counts(registry, lambda: NOW), owner_counts(registry, lambda: NOW), violation_counts(registry)
    prom.register(FleetCollector(registry, silent_after=dt.timedelta(days=1), connected=lambda: connected,
                                 expiry=parts[0], owners=parts[1], violations=parts[2], recorder=rec,
                                 clock=lambda: NOW))
    for part in parts:                     # what the collector's background loop does every [metrics] refresh
        part.refresh()
    return prom, rec


def fill(registry, make_agent) -> dict[str, str]:  # noqa: ANN001
    """web1 (seen now): certificates expiring in 3, 10, 20, 60 and 200 days and one expired; web2 (silent
    for 2 days): the 3-day one too, and a 100-day one in two files. One owner rule for web1's nginx."""
    ca = root_ca()
    # not_before is a day before T0: days=4 -> expires in 3 days
    certs = {name: leaf(f"{name}.example.com", ca, days=d + 1) for name, d in
             (("d3", 3), ("d10", 10), ("d20", 20), ("d60", 60), ("d200", 200), ("d100", 100))}
    expired = leaf("old.example.com", ca, not_before=NOW - dt.timedelta(days=100), days=95)
    make_agent("agent-1", "web1.example.com")
    make_agent("agent-2", "web2.example.com", now=NOW - dt.timedelta(days=2))
    store_report(registry, "agent-1", header("r1", full=True, sequence=1, hostname="web1.example.com"),
                 [location(certs[n], f"/etc/nginx/{n}.pem", labels={"environment": "prod"})
                  for n in ("d3", "d10", "d20", "d60", "d200")]
                 + [location(expired, "/etc/ssl/old.pem")], now=NOW)
    store_report(registry, "agent-2", header("r2", full=True, sequence=1, hostname="web2.example.com"),
                 [location(certs["d3"], "/srv/app/d3.pem"), location(certs["d100"], "/srv/app/a.pem"),
                  location(certs["d100"], "/srv/app/b.pem")], now=NOW - dt.timedelta(days=2))
    registry.owners.create_owner("web-team", NOW, contacts=["web@example.com"])
    registry.owners.add_rule("nginx", NOW, owner="web-team", path="/etc/nginx/**")
    return {n: c.fingerprint for n, c in certs.items()}


def test_scrape_shows_the_fleet(registry, make_agent) -> None:  # noqa: ANN001
    fps = fill(registry, make_agent)
    registry.jobs.create_renewals(fps["d10"], None, "web", "admin:alice", "test", NOW)
    registry.jobs.create_renewals(fps["d3"], LocationSelector(path="/srv/app/d3.pem"), "web", "admin:alice", "t", NOW)
    registry.jobs.mark_stuck(NOW + dt.timedelta(days=30))
    prom, _ = fleet(registry, connected=1)
    got = scrape(prom)

    def v(name: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted(labels.items()))))

    assert v("certfleet_registry_up") == 1
    # disjoint windows; a certificate at two hosts counts once, its locations twice
    assert [v("certfleet_certificates", window=w) for w in ("expired", "7d", "14d", "30d", "90d")] == [1, 1, 1, 1, 1]
    assert [v("certfleet_locations", window=w) for w in ("expired", "7d", "14d", "30d", "90d")] == [1, 2, 1, 1, 1]
    assert v("certfleet_certificates", window="later") is None          # beyond 90 days: not counted
    assert v("certfleet_agents", status="enrolled") == 2
    assert v("certfleet_agents", status="silent") == 1             # web2: last seen 2 days ago
    assert v("certfleet_agents", status="revoked") == 0
    assert v("certfleet_agents_connected") == 1
    assert v("certfleet_jobs", state="stuck") == 2
    assert v("certfleet_jobs", state="verified") == 0
    assert v("certfleet_stale_services") == 0
    # owners: the rule gives web1's nginx files to web-team (environment from the label); the rest has none
    assert v("certfleet_locations_by_owner", owner="web-team", environment="prod", window="7d") == 1
    assert v("certfleet_locations_by_owner", owner="web-team", environment="prod", window="14d") == 1
    assert v("certfleet_locations_by_owner", owner="web-team", environment="prod", window="30d") == 1
    assert v("certfleet_locations_by_owner", owner="(none)", environment="(none)", window="7d") == 1
    assert v("certfleet_locations_by_owner", owner="(none)", environment="(none)", window="expired") == 1
    assert v("certfleet_metrics_refresh_age_seconds", part="expiry") is not None


def test_violations_and_a_renewal_appear(registry, make_agent) -> None:  # noqa: ANN001
    fill(registry, make_agent)
    registry.policies.set_policy("[global]\nmax_validity_days = 100\n", NOW, actor="test")
    registry.policies.evaluate_all(NOW)
    prom, rec = fleet(registry)
    rec.renewal_finished("verified", 12.0)
    rec.renewal_finished("rolled_back", 40.0)
    rec.report_ingested("stored", 0.02)
    got = scrape(prom)
    viol = {dict(k[1])["rule"]: v for k, v in got.items() if k[0] == "certfleet_violations"}
    # per location: the 201-day certificate once, the 101-day one in its two files; the expired one installed
    assert viol == {"max_validity_days": 3, "expired_installed": 1}
    assert got[("certfleet_renewals_total", (("outcome", "verified"),))] == 1
    assert got[("certfleet_renewals_total", (("outcome", "rolled_back"),))] == 1
    assert got[("certfleet_renewals_total", (("outcome", "failed"),))] == 0
    assert got[("certfleet_renewal_duration_seconds_bucket", (("le", "60.0"), ("outcome", "rolled_back")))] == 1
    assert got[("certfleet_reports_ingested_total", (("outcome", "stored"),))] == 1


def test_label_sets_do_not_grow_with_the_fleet(registry, make_agent) -> None:  # noqa: ANN001
    """Ten times the certificates, the same series: no label names a certificate, a path or a host."""
    make_agent("agent-1", "web1.example.com")
    ca = root_ca()

    def series_after(n: int, seq: int) -> set[tuple]:
        # both rounds have certificates in every window: 3, 10, 20, 60 and 200 days left
        locs = [location(leaf(f"h{i}.example.com", ca, days=(4, 11, 21, 61, 201)[i % 5]), f"/etc/ssl/{i}.pem")
                for i in range(n)]
        store_report(registry, "agent-1", header(f"r{seq}", full=True, sequence=seq), locs, now=NOW)
        prom, _ = fleet(registry)
        return {k for k in scrape(prom) if not k[0].startswith("certfleet_metrics_")}

    few = series_after(10, 1)
    many = series_after(100, 2)
    assert few == many
    for name, labels in many:
        for key, value in labels:
            assert ".pem" not in value and "example.com" not in value, (name, key, value)


def test_a_database_that_fails_is_a_metric_not_an_error(registry) -> None:  # noqa: ANN001
    """A table gone (a botched restore, say): the scrape still answers, registry_up 0, errors counted."""
    from sqlalchemy import text   # only this test writes SQL

    prom, rec = fleet(registry)
    watch_engine(registry.engine, rec)
    with registry.engine.begin() as conn:
        conn.execute(text("DROP TABLE scheduler_leases"))
    got = scrape(prom)
    assert got[("certfleet_registry_up", ())] == 0
    got = scrape(prom)          # the errors of a scrape are counted during it: the next scrape shows them
    assert got[("certfleet_registry_up", ())] == 0
    kinds = {dict(k[1])["kind"]: v for k, v in got.items() if k[0] == "certfleet_db_errors_total"}
    assert kinds and all(v >= 1 for v in kinds.values()), kinds
    assert set(kinds) <= {"OperationalError", "UndefinedTable", "ProgrammingError"}, kinds
