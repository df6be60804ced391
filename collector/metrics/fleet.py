"""The fleet's gauges, read from the registry (a custom collector).

Every series here comes from a handful of aggregate queries (collector/registry/fleetstats.py):
certificates and locations per expiry window, jobs per state, open violations per rule, stale
services, agents enrolled / revoked / silent, deliveries per channel and state, the scheduler's
leases. They describe the shared database, so **every collector process exposes the same
values**: read them from one (``max without (instance)`` in PromQL), never sum them.

Most are read when Prometheus scrapes: short ``GROUP BY``s over small tables or index lookups
(jobs, agents, stale services, deliveries, leases). Three are not, because their cost grows with
the fleet: the expiry windows (one aggregate over the certificates expiring within 90 days and
their present locations: seconds at 100,000 certificates / 300,000 locations), the open
violations per rule (an index of one entry per violating location) and the locations per owner
and environment (owners are resolved by rules per location, collector/domain/ownership.py, not
stored). :class:`Refreshed` computes each in the background (``[metrics] refresh``, default 2 min,
for the first two; ``owner_refresh``, default 5 min) and the scrape serves the last result, with
its age in ``certfleet_metrics_refresh_age_seconds{part}``.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from collector.domain.jobstates import STATES
from collector.metrics.recorder import NULL, Recorder
from collector.registry.fleetstats import FleetStats
from collector.reports.assigned import placed

__all__ = ["FleetCollector", "Refreshed", "WINDOWS", "expiry_counts", "owner_counts", "violation_counts", "window_edges"]

log = logging.getLogger(__name__)

#: the expiry windows (disjoint): label and upper edge in days from now; "expired" is before now.
#: Nothing beyond 90 days is counted: the aggregate then reads only the certificates that expire
#: within 90 days (its cost follows them, not the fleet)
WINDOWS: tuple[tuple[str, float], ...] = (("expired", 0), ("7d", 7), ("14d", 14), ("30d", 30), ("90d", 90))
OWNER_WINDOWS = 4          # the breakdown by owner covers expired, 7d, 14d and 30d
NO_OWNER = "(none)"
NO_ENVIRONMENT = "(none)"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def window_edges(now: dt.datetime) -> list[dt.datetime]:
    """Upper edges of the windows of :data:`WINDOWS`."""
    return [now + dt.timedelta(days=d) for _, d in WINDOWS]


def window_labels() -> list[str]:
    return [w for w, _ in WINDOWS]


class Refreshed:
    """A value computed by ``compute()`` in the background (:meth:`refresh`, from a thread) and
    read by scrapes (:meth:`snapshot`): the last value, when it was made and how long it took."""

    def __init__(self, part: str, compute: Callable[[], Any]) -> None:
        self.part = part
        self.compute = compute
        self.value: Any = None
        self.at: float | None = None          # time.time() of the last refresh
        self.seconds = 0.0                    # how long it took
        self._lock = threading.Lock()

    def refresh(self) -> Any:
        t0 = time.perf_counter()
        value = self.compute()
        with self._lock:
            self.value, self.at, self.seconds = value, time.time(), time.perf_counter() - t0
        return value

    def snapshot(self) -> tuple[Any, float | None, float]:
        with self._lock:
            return self.value, self.at, self.seconds


def expiry_counts(registry: Any, clock: Callable[[], dt.datetime] = utcnow) -> Refreshed:
    """(certificates, locations) per window of :data:`WINDOWS`: one aggregate."""
    stats = FleetStats(registry.engine)
    return Refreshed("expiry", lambda: stats.expiry_windows(window_edges(clock())))


def violation_counts(registry: Any) -> Refreshed:
    """Open violations per rule."""
    stats = FleetStats(registry.engine)
    return Refreshed("violations", stats.violations_by_rule)


def owner_counts(registry: Any, clock: Callable[[], dt.datetime] = utcnow) -> Refreshed:
    """Locations per (owner, environment, window) for the windows up to 30 days: a walk of those locations."""
    def walk() -> dict[tuple[str, str, str], int]:
        edges = window_edges(clock())[:OWNER_WINDOWS]
        labels = window_labels()[:OWNER_WINDOWS]
        counts: dict[tuple[str, str, str], int] = {}
        fp, k = None, 0
        for pl, a in placed(registry, edges[-1], services_only=True):
            if pl.fingerprint != fp:
                fp = pl.fingerprint
                k = next((i for i, e in enumerate(edges) if pl.not_after < e), len(edges) - 1)
            key = (a.owner or NO_OWNER, a.environment or NO_ENVIRONMENT, labels[k])
            counts[key] = counts.get(key, 0) + 1
        return counts
    return Refreshed("owners", walk)


class FleetCollector(Collector):
    """``collect()`` runs the aggregates; a database that does not answer gives ``certfleet_registry_up 0``."""

    def __init__(self, registry: Any, *, silent_after: dt.timedelta, connected: Callable[[], int] | None = None,
                 expiry: Refreshed | None = None, owners: Refreshed | None = None,
                 violations: Refreshed | None = None, recorder: Recorder = NULL,
                 clock: Callable[[], dt.datetime] = utcnow, instance: Callable[[], str | None] | None = None) -> None:
        self.stats = FleetStats(registry.engine)
        self.silent_after = silent_after
        self.connected = connected
        self.expiry = expiry or expiry_counts(registry, clock)
        self.owners = owners or owner_counts(registry, clock)
        self.violations = violations or violation_counts(registry)
        self.recorder = recorder
        self.clock = clock
        self.instance = instance          # this process's scheduler instance id (host:pid:uuid), when it has one

    def describe(self) -> list[Any]:
        return []        # no describe at registration: collect() would query the database then

    def collect(self) -> Iterator[Any]:
        t0 = time.perf_counter()
        up = GaugeMetricFamily("certfleet_registry_up", "1 when the registry answered this scrape's queries")
        try:
            families = list(self._families(self.clock()))
        except Exception as e:  # noqa: BLE001 - a scrape must answer even when the database does not
            log.warning("metrics: the registry did not answer: %s", e)
            self.recorder.db_error(type(e).__name__)
            families = []
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
        yield up
        yield from families
        if self.connected is not None:
            g = GaugeMetricFamily("certfleet_agents_connected",
                                  "Agents holding a command stream to this collector process (sum over processes)")
            g.add_metric([], self.connected())
            yield g
        yield from self._refreshed_families()
        took = GaugeMetricFamily("certfleet_metrics_collect_seconds", "Time the registry aggregates took this scrape")
        took.add_metric([], time.perf_counter() - t0)
        yield took

    def _families(self, now: dt.datetime) -> Iterator[Any]:
        counts, leases = self.stats.at_scrape(now, now - self.silent_after)
        jobs = GaugeMetricFamily("certfleet_jobs", "Renewal jobs in the registry per state", labels=["state"])
        for state in STATES:
            jobs.add_metric([state], counts.jobs.get(state, 0))
        yield jobs

        stale = GaugeMetricFamily("certfleet_stale_services",
                                  "Locations whose process still serves another certificate than the file holds")
        stale.add_metric([], counts.stale)
        yield stale

        agents = GaugeMetricFamily("certfleet_agents", "Agents per status (silent: active, not seen for "
                                   "[notify] agent_silent_after)", labels=["status"])
        for status in ("enrolled", "revoked", "silent"):
            agents.add_metric([status], counts.agents.get(status, 0))
        yield agents

        dl = GaugeMetricFamily("certfleet_deliveries", "Notification deliveries in the registry per channel and state",
                               labels=["channel", "state"])
        for (channel, state), n in sorted(counts.deliveries.items()):
            dl.add_metric([channel, state], n)
        yield dl

        held = GaugeMetricFamily("certfleet_scheduler_lease_held", "1 while a collector holds the job's lease "
                                 "(a run in progress)", labels=["task"])
        last = GaugeMetricFamily("certfleet_scheduler_last_run_timestamp_seconds",
                                 "When the job's last run ended, on any collector", labels=["task"])
        ok = GaugeMetricFamily("certfleet_scheduler_last_run_ok", "1 when the job's last run succeeded",
                               labels=["task"])
        me = self.instance() if self.instance is not None else None
        mine = GaugeMetricFamily("certfleet_scheduler_lease_mine", "1 when this collector process holds the job's "
                                 "lease (runs it now)", labels=["task"])
        for lease in leases:
            held.add_metric([lease.name], 1 if lease.held else 0)
            mine.add_metric([lease.name], 1 if lease.held and me is not None and lease.holder == me else 0)
            if lease.last_run_at is not None:
                last.add_metric([lease.name], lease.last_run_at.timestamp())
            if lease.last_ok is not None:
                ok.add_metric([lease.name], 1 if lease.last_ok else 0)
        yield held
        yield mine
        yield last
        yield ok

    def _refreshed_families(self) -> Iterator[Any]:
        age = GaugeMetricFamily("certfleet_metrics_refresh_age_seconds",
                                "Seconds since a background-computed part was computed (expiry, owners)", labels=["part"])
        took = GaugeMetricFamily("certfleet_metrics_refresh_seconds", "How long its last computation took",
                                 labels=["part"])
        windows, at, seconds = self.expiry.snapshot()
        if windows is not None:
            certs = GaugeMetricFamily("certfleet_certificates",
                                      "Certificates with a present location, per expiry window (disjoint; trust "
                                      "anchors left out)", labels=["window"])
            locs = GaugeMetricFamily("certfleet_locations", "Present locations per expiry window of their certificate",
                                     labels=["window"])
            for label, (n_certs, n_locs) in zip(window_labels(), windows):
                certs.add_metric([label], n_certs)
                locs.add_metric([label], n_locs)
            yield certs
            yield locs
        counts, at2, seconds2 = self.owners.snapshot()
        if counts is not None:
            fam = GaugeMetricFamily("certfleet_locations_by_owner",
                                    "Present locations expiring within 30 days per owner, environment and window",
                                    labels=["owner", "environment", "window"])
            for (owner, env, window), n in sorted(counts.items()):
                fam.add_metric([owner, env, window], n)
            yield fam
        by_rule, at3, seconds3 = self.violations.snapshot()
        if by_rule is not None:
            viol = GaugeMetricFamily("certfleet_violations", "Open policy violations (one per location, excepted ones "
                                     "included) per rule", labels=["rule"])
            for rule, n in sorted(by_rule.items()):
                viol.add_metric([rule], n)
            yield viol
        now = time.time()
        for part, when, secs in (("expiry", at, seconds), ("owners", at2, seconds2), ("violations", at3, seconds3)):
            if when is not None:
                age.add_metric([part], max(now - when, 0.0))
                took.add_metric([part], secs)
        yield age
        yield took
