"""The :class:`~collector.metrics.recorder.Recorder` on prometheus_client counters and histograms.

These are kept by each collector process (they count what *this* process did): with several
collectors, every one exposes its own and PromQL sums them (``sum by (outcome)
(rate(certfleet_renewals_total[5m]))``). Labels are bounded: outcomes, channel names from the
config, scheduled job names, exception class names.
"""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import event

__all__ = ["PromRecorder", "watch_engine"]

#: renewals take seconds (internal CA) to minutes (ACME, a slow reload) to hours (an offline agent)
RENEWAL_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
#: a report is milliseconds (a delta) to tens of seconds (a first report of 20,000 certificates)
INGEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SCHEDULER_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)

_MAX_LABEL = 100     # an exception name or a channel name longer than this is cut


def _cut(value: str) -> str:
    return value[:_MAX_LABEL]


class PromRecorder:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.renewals = Counter("certfleet_renewals", "Renewal jobs that ended, by outcome (this process)",
                                ["outcome"], registry=registry)
        self.renewal_seconds = Histogram("certfleet_renewal_duration_seconds",
                                         "From the request to the end of a renewal job, by outcome",
                                         ["outcome"], buckets=RENEWAL_BUCKETS, registry=registry)
        self.reports = Counter("certfleet_reports_ingested", "Agent reports received, by outcome (this process)",
                               ["outcome"], registry=registry)
        self.report_seconds = Histogram("certfleet_report_ingest_seconds",
                                        "Time to receive and store one agent report",
                                        buckets=INGEST_BUCKETS, registry=registry)
        self.deliveries = Counter("certfleet_notification_deliveries",
                                  "Notification delivery attempts by channel and outcome (sent, retrying, failed)",
                                  ["channel", "outcome"], registry=registry)
        self.scheduler_runs = Counter("certfleet_scheduler_runs", "Scheduled job runs this process won, by outcome",
                                      ["task", "outcome"], registry=registry)
        self.scheduler_seconds = Histogram("certfleet_scheduler_run_seconds", "Duration of scheduled job runs",
                                           ["task"], buckets=SCHEDULER_BUCKETS, registry=registry)
        self.db_errors = Counter("certfleet_db_errors", "Errors raised by the database driver, by exception class",
                                 ["kind"], registry=registry)
        self.db_connects = Counter("certfleet_db_connections_opened",
                                   "Database connections this process opened (a rise after the start: reconnects)",
                                   registry=registry)
        for outcome in ("verified", "rolled_back", "failed"):   # present at 0 before the first renewal
            self.renewals.labels(outcome)
        for outcome in ("stored", "resync", "error"):
            self.reports.labels(outcome)

    def renewal_finished(self, outcome: str, seconds: float) -> None:
        self.renewals.labels(_cut(outcome)).inc()
        self.renewal_seconds.labels(_cut(outcome)).observe(max(seconds, 0.0))

    def report_ingested(self, outcome: str, seconds: float) -> None:
        self.reports.labels(_cut(outcome)).inc()
        self.report_seconds.observe(max(seconds, 0.0))

    def delivery_attempted(self, channel: str, outcome: str) -> None:
        self.deliveries.labels(_cut(channel), _cut(outcome)).inc()

    def scheduler_run(self, job: str, outcome: str, seconds: float) -> None:
        self.scheduler_runs.labels(_cut(job), _cut(outcome)).inc()
        self.scheduler_seconds.labels(_cut(job)).observe(max(seconds, 0.0))

    def db_error(self, kind: str) -> None:
        self.db_errors.labels(_cut(kind)).inc()

    def db_connected(self) -> None:
        self.db_connects.inc()


def watch_engine(engine: Any, recorder: Any) -> None:
    """Count every error the database driver raises on ``engine`` (SQLAlchemy's ``handle_error``
    event: lost connections, timeouts, lock waits, constraint violations) by exception class, and
    every connection the pool opens (``connect``: a rise after the start means reconnects)."""
    def on_error(ctx: Any) -> None:
        recorder.db_error(type(ctx.original_exception).__name__)

    event.listen(engine, "handle_error", on_error)
    event.listen(engine, "connect", lambda *_: recorder.db_connected())   # new DBAPI connections: reconnects
