"""The fleet's gauges, read from the registry when Prometheus scrapes (a custom collector).

Every series here comes from a handful of aggregate queries (collector/registry/fleetstats.py):
certificates and locations per expiry window, jobs per state, open violations per rule, stale
services, agents enrolled / revoked / silent, deliveries per channel and state, the scheduler's
leases. They describe the shared database, so **every collector process exposes the same
values**: read them from one (``max without (instance)`` in PromQL), never sum them.

Owner and environment are not stored; they are resolved by the rules
(collector/domain/ownership.py) per location. Counting locations per owner walks every location
expiring within the horizon (30 days), too slow for a scrape at fleet size, so
:class:`OwnerBreakdown` does it in the background every ``owner_refresh`` and the scrape
serves its last result with its age (``certfleet_owner_breakdown_age_seconds``).
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

__all__ = ["FleetCollector", "OwnerBreakdown", "WINDOWS", "window_edges"]

log = logging.getLogger(__name__)

#: the expiry windows (disjoint): label and upper edge in days from now; "expired" is before now,
#: "later" everything after the last edge
WINDOWS: tuple[tuple[str, float], ...] = (("expired", 0), ("7d", 7), ("14d", 14), ("30d", 30), ("90d", 90))
LATER = "later"
FAR = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
OWNER_WINDOWS = 4          # the breakdown by owner covers expired, 7d, 14d and 30d
NO_OWNER = "(none)"
NO_ENVIRONMENT = "(none)"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def window_edges(now: dt.datetime) -> list[dt.datetime]:
    """Upper edges of the windows of :data:`WINDOWS`, then of ``later``."""
    return [now + dt.timedelta(days=d) for _, d in WINDOWS] + [FAR]


def window_labels() -> list[str]:
    return [w for w, _ in WINDOWS] + [LATER]


class OwnerBreakdown:
    """Locations per (owner, environment, window), refreshed by :meth:`refresh` (in a thread)."""

    def __init__(self, registry: Any, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.registry = registry
        self.clock = clock
        self.counts: dict[tuple[str, str, str], int] = {}
        self.at: float | None = None          # time.time() of the last refresh
        self.seconds = 0.0                    # how long it took
        self._lock = threading.Lock()

    def refresh(self) -> int:
        """Walk the locations expiring within 30 days and count them; returns the number of series."""
        t0 = time.perf_counter()
        now = self.clock()
        edges = window_edges(now)[:OWNER_WINDOWS]
        labels = window_labels()[:OWNER_WINDOWS]
        counts: dict[tuple[str, str, str], int] = {}
        fp, k = None, 0
        for pl, a in placed(self.registry, edges[-1], services_only=True):
            if pl.fingerprint != fp:
                fp = pl.fingerprint
                k = next((i for i, e in enumerate(edges) if pl.not_after < e), len(edges) - 1)
            key = (a.owner or NO_OWNER, a.environment or NO_ENVIRONMENT, labels[k])
            counts[key] = counts.get(key, 0) + 1
        with self._lock:
            self.counts, self.at, self.seconds = counts, time.time(), time.perf_counter() - t0
        return len(counts)

    def snapshot(self) -> tuple[dict[tuple[str, str, str], int], float | None, float]:
        with self._lock:
            return dict(self.counts), self.at, self.seconds


class FleetCollector(Collector):
    """``collect()`` runs the aggregates; a database that does not answer gives ``certfleet_registry_up 0``."""

    def __init__(self, registry: Any, *, silent_after: dt.timedelta, connected: Callable[[], int] | None = None,
                 owners: OwnerBreakdown | None = None, recorder: Recorder = NULL,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.stats = FleetStats(registry.engine)
        self.silent_after = silent_after
        self.connected = connected
        self.owners = owners
        self.recorder = recorder
        self.clock = clock

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
        if self.owners is not None:
            yield from self._owner_families()
        took = GaugeMetricFamily("certfleet_metrics_collect_seconds", "Time the registry aggregates took this scrape")
        took.add_metric([], time.perf_counter() - t0)
        yield took

    def _families(self, now: dt.datetime) -> Iterator[Any]:
        st = self.stats
        certs = GaugeMetricFamily("certfleet_certificates",
                                  "Certificates with a present location, per expiry window (disjoint; trust anchors "
                                  "left out)", labels=["window"])
        locs = GaugeMetricFamily("certfleet_locations", "Present locations per expiry window of their certificate",
                                 labels=["window"])
        for label, (n_certs, n_locs) in zip(window_labels(), st.expiry_windows(window_edges(now))):
            certs.add_metric([label], n_certs)
            locs.add_metric([label], n_locs)
        yield certs
        yield locs

        by_state = st.jobs_by_state()
        jobs = GaugeMetricFamily("certfleet_jobs", "Renewal jobs in the registry per state", labels=["state"])
        for state in STATES:
            jobs.add_metric([state], by_state.get(state, 0))
        yield jobs

        viol = GaugeMetricFamily("certfleet_violations", "Open policy violations per rule (excepted: covered by an "
                                 "exception)", labels=["rule", "excepted"])
        for (rule, excepted), n in sorted(st.violations_by_rule().items()):
            viol.add_metric([rule, "true" if excepted else "false"], n)
        yield viol

        stale = GaugeMetricFamily("certfleet_stale_services",
                                  "Locations whose process still serves another certificate than the file holds")
        stale.add_metric([], st.stale_services())
        yield stale

        a = st.agents(now - self.silent_after)
        agents = GaugeMetricFamily("certfleet_agents", "Agents per status (silent: active, not seen for "
                                   "[notify] agent_silent_after)", labels=["status"])
        agents.add_metric(["enrolled"], a.enrolled)
        agents.add_metric(["revoked"], a.revoked)
        agents.add_metric(["silent"], a.silent)
        yield agents

        dl = GaugeMetricFamily("certfleet_deliveries", "Notification deliveries in the registry per channel and state",
                               labels=["channel", "state"])
        for (channel, state), n in sorted(st.deliveries_by_channel().items()):
            dl.add_metric([channel, state], n)
        yield dl

        held = GaugeMetricFamily("certfleet_scheduler_lease_held", "1 while a collector holds the job's lease "
                                 "(a run in progress)", labels=["job"])
        last = GaugeMetricFamily("certfleet_scheduler_last_run_timestamp_seconds",
                                 "When the job's last run ended, on any collector", labels=["job"])
        ok = GaugeMetricFamily("certfleet_scheduler_last_run_ok", "1 when the job's last run succeeded",
                               labels=["job"])
        for lease in st.leases(now):
            held.add_metric([lease.name], 1 if lease.held else 0)
            if lease.last_run_at is not None:
                last.add_metric([lease.name], lease.last_run_at.timestamp())
            if lease.last_ok is not None:
                ok.add_metric([lease.name], 1 if lease.last_ok else 0)
        yield held
        yield last
        yield ok

    def _owner_families(self) -> Iterator[Any]:
        assert self.owners is not None
        counts, at, seconds = self.owners.snapshot()
        fam = GaugeMetricFamily("certfleet_locations_by_owner",
                                "Present locations expiring within 30 days per owner, environment and window "
                                "(refreshed in the background)", labels=["owner", "environment", "window"])
        for (owner, env, window), n in sorted(counts.items()):
            fam.add_metric([owner, env, window], n)
        yield fam
        if at is not None:
            age = GaugeMetricFamily("certfleet_owner_breakdown_age_seconds",
                                    "Seconds since certfleet_locations_by_owner was computed")
            age.add_metric([], max(time.time() - at, 0.0))
            yield age
            took = GaugeMetricFamily("certfleet_owner_breakdown_seconds", "How long the last owner breakdown took")
            took.add_metric([], seconds)
            yield took
