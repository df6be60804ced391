"""Fleet-wide counts for the collector's ``/metrics``: a few aggregates, never a row per certificate.

Each method is one short aggregate query (``GROUP BY`` a bounded column: job state, rule,
store type, agent status) whose answer has as many rows as that column has values, whatever
the size of the fleet. The expiry windows are ``ExpiryStore.counts`` (collector/registry/expiry.py),
one aggregate over the certificates' ``(not_after, fingerprint)`` index. Owners and
environments are resolved by rules (collector/domain/ownership.py), not stored: counting by
owner walks the window's locations (collector/reports/assigned.py), which is why the metrics
room refreshes those in the background instead of at every scrape.

What it may import: SQLAlchemy, the tables, the pure domain. Used by collector/metrics/.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, literal_column, select, union_all

from collector.registry import db
from collector.registry.expiry import ExpiryStore
from collector.registry.models.agents import agents
from collector.registry.models.inventory import locations
from collector.registry.models.jobs import jobs
from collector.registry.models.leases import scheduler_leases
from collector.registry.models.notify import deliveries
from collector.registry.models.policy import policy_violations

__all__ = ["FleetStats", "LeaseFacts", "ScrapeCounts"]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class ScrapeCounts:
    jobs: dict[str, int] = field(default_factory=dict)                    # per state
    agents: dict[str, int] = field(default_factory=dict)                  # enrolled, revoked, silent
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)  # per (channel, state)
    stale: int = 0


@dataclass(frozen=True)
class LeaseFacts:
    name: str
    holder: str
    held: bool             # the lease is held now (a run in progress)
    last_run_at: dt.datetime | None
    last_ok: bool | None   # None before the first run


class FleetStats(db.Connections):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.expiry = ExpiryStore(engine)

    def expiry_windows(self, edges: list[dt.datetime]) -> list[tuple[int, int]]:
        """(certificates, present locations) per window; trust anchors left out (see ExpiryStore.counts)."""
        return self.expiry.counts(edges, services_only=True)

    def violations_by_rule(self) -> dict[str, int]:
        """Open violations (excepted ones included) per rule: the ``(cleared_at, rule)`` index alone."""
        v = policy_violations.c
        stmt = select(v.rule, func.count()).where(v.cleared_at.is_(None)).group_by(v.rule)
        with self._read() as conn:
            return {r: int(n) for r, n in conn.execute(stmt)}

    def at_scrape(self, now: dt.datetime, silent_before: dt.datetime) -> tuple[ScrapeCounts, list[LeaseFacts]]:
        """What a scrape reads, in two statements on one connection (a round trip costs more than these
        small counts on a busy host): jobs per state, stale services, agents, deliveries; the leases."""
        a, d, lc = agents.c, deliveries.c, locations.c
        active = a.status == "active"

        def row(kind: str, k1: Any = None, k2: Any = None) -> Any:
            return select(literal_column(f"'{kind}'"), k1 if k1 is not None else literal_column("''"),
                          k2 if k2 is not None else literal_column("''"), func.count())

        stmt = union_all(
            row("job", jobs.c.state).group_by(jobs.c.state),
            # a range on stale_since, not IS NOT NULL: SQLite then finds the few stale rows by its index
            row("stale").where(lc.stale_since > EPOCH, lc.stale_served_fingerprint.is_not(None),
                               lc.status == "present"),
            row("agent", literal_column("'enrolled'")).where(active),
            row("agent", literal_column("'revoked'")).where(~active),
            row("agent", literal_column("'silent'")).where(active, a.last_seen < silent_before),
            row("delivery", d.channel, d.state).group_by(d.channel, d.state),
        )
        counts = ScrapeCounts()
        with self._read() as conn:
            for kind, k1, k2, n in conn.execute(stmt):
                n = int(n)
                if kind == "job":
                    counts.jobs[k1] = n
                elif kind == "stale":
                    counts.stale = n
                elif kind == "agent":
                    counts.agents[k1] = n
                else:
                    counts.deliveries[(k1, k2)] = n
            leases = self._leases(conn, now)
        return counts, leases

    def leases(self, now: dt.datetime) -> list[LeaseFacts]:
        with self._read() as conn:
            return self._leases(conn, now)

    @staticmethod
    def _leases(conn: Any, now: dt.datetime) -> list[LeaseFacts]:
        s = scheduler_leases.c
        out = []
        for name, holder, expires, last_run, result in conn.execute(
                select(s.name, s.holder, s.expires_at, s.last_run_at, s.last_result)):
            ok = None if not result else result.startswith("ok")
            out.append(LeaseFacts(name, holder or "", bool(expires and expires > now), last_run, ok))
        return out
