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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, case, func, select

from collector.registry import db
from collector.registry.expiry import ExpiryStore
from collector.registry.models.agents import agents
from collector.registry.models.inventory import locations
from collector.registry.models.jobs import jobs
from collector.registry.models.leases import scheduler_leases
from collector.registry.models.notify import deliveries
from collector.registry.models.policy import policy_violations

__all__ = ["FleetStats", "AgentCounts", "LeaseFacts"]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class AgentCounts:
    enrolled: int          # active (not revoked)
    revoked: int
    silent: int            # active, last seen before the silence limit


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

    def jobs_by_state(self) -> dict[str, int]:
        with self._read() as conn:
            return {s: int(n) for s, n in conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))}

    def violations_by_rule(self) -> dict[str, int]:
        """Open violations (excepted ones included) per rule: the ``(cleared_at, rule)`` index alone."""
        v = policy_violations.c
        stmt = select(v.rule, func.count()).where(v.cleared_at.is_(None)).group_by(v.rule)
        with self._read() as conn:
            return {r: int(n) for r, n in conn.execute(stmt)}

    def stale_services(self) -> int:
        lc = locations.c
        # a range on stale_since, not IS NOT NULL: SQLite then finds the few stale rows by its index
        stmt = select(func.count()).where(lc.stale_since > EPOCH, lc.stale_served_fingerprint.is_not(None),
                                          lc.status == "present")
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def agents(self, silent_before: dt.datetime) -> AgentCounts:
        a = agents.c
        active = a.status == "active"
        stmt = select(
            func.coalesce(func.sum(db_case(active)), 0),
            func.coalesce(func.sum(db_case(~active)), 0),
            func.coalesce(func.sum(db_case(active & (a.last_seen < silent_before))), 0),
        )
        with self._read() as conn:
            enrolled, revoked, silent = conn.execute(stmt).one()
        return AgentCounts(int(enrolled), int(revoked), int(silent))

    def deliveries_by_channel(self) -> dict[tuple[str, str], int]:
        """Deliveries per (channel, state): pending, sent, failed."""
        d = deliveries.c
        with self._read() as conn:
            return {(c, s): int(n) for c, s, n in
                    conn.execute(select(d.channel, d.state, func.count()).group_by(d.channel, d.state))}

    def leases(self, now: dt.datetime) -> list[LeaseFacts]:
        s = scheduler_leases.c
        out = []
        with self._read() as conn:
            for name, holder, expires, last_run, result in conn.execute(
                    select(s.name, s.holder, s.expires_at, s.last_run_at, s.last_result)):
                if expires is not None and expires.tzinfo is None:
                    expires = expires.replace(tzinfo=dt.timezone.utc)
                if last_run is not None and last_run.tzinfo is None:
                    last_run = last_run.replace(tzinfo=dt.timezone.utc)
                ok = None if not result else result.startswith("ok")
                out.append(LeaseFacts(name, holder or "", bool(expires and expires > now), last_run, ok))
        return out


def db_case(cond: Any) -> Any:
    """1 where ``cond`` holds, else 0 (a sum of it counts the rows)."""
    return case((cond, 1), else_=0)
