"""``expiring``: what expires within 7, 30 and 90 days, per location, with its owner and service.

Sections (disjoint, soonest first): expired but still installed, then one per
threshold: within 7 days, 8-30 days, 31-90 days. ``within`` (default ``90d``)
moves the horizon; thresholds beyond it are dropped and it becomes the last one.
Owner, environment, criticality and service come from collector/ownership.py
(explicit assignment, rules, then label hints) for each location.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from collector.registry.types import CertFilter
from collector.reports import params as p
from collector.reports.assigned import placed
from collector.reports.model import Report, Section, cn_or_dn, days_left, iso

PARAMS = ("within",)
THRESHOLDS_DAYS = (7, 30, 90)
COLUMNS = ("days_left", "not_after", "subject", "host", "path", "service", "owner", "environment",
           "criticality", "owner_source", "fingerprint")


def thresholds(within: dt.timedelta) -> list[float]:
    """The section limits in days: the standard ones below the horizon, then the horizon."""
    horizon = within.total_seconds() / 86400
    return [float(t) for t in THRESHOLDS_DAYS if t < horizon] + [horizon]


def _limit_text(days: float) -> str:
    return f"{days:g} days" if days >= 1 else f"{days * 24:g} hours"


def build(registry: Any, params: Mapping[str, str], now: dt.datetime) -> Report:
    within = p.duration(params, "within", "90d")
    limits = thresholds(within)
    titles = ["Expired, still installed"] + [f"Within {_limit_text(t)}" for t in limits]
    notes = ["past not_after and still present on a host", f"expiring within {_limit_text(limits[0])}"] + [
        f"expiring after {_limit_text(lo)} and within {_limit_text(hi)}" for lo, hi in zip(limits, limits[1:])]
    buckets: list[list[tuple]] = [[] for _ in titles]
    certs_in: list[set[str]] = [set() for _ in titles]
    no_owner = 0
    last_fp, cert_cells = None, (0, "", "")
    for pl in placed(registry, CertFilter(expiring_before=now + within), now):
        c, loc, a = pl.certificate, pl.location, pl.assignment
        left_days = (c.not_after - now).total_seconds() / 86400
        i = 0 if left_days < 0 else 1 + next((k for k, t in enumerate(limits) if left_days <= t), len(limits) - 1)
        if c.fingerprint != last_fp:            # locations of one certificate come together
            last_fp, cert_cells = c.fingerprint, (days_left(c.not_after, now), iso(c.not_after), cn_or_dn(c.subject))
        buckets[i].append((
            *cert_cells, loc.hostname,
            loc.path + (f" [{loc.alias}]" if loc.alias else ""), a.service, a.owner, a.environment,
            a.criticality, a.sources.get("owner"), c.fingerprint,
        ))
        certs_in[i].add(c.fingerprint)
        no_owner += a.owner is None
    summary: list[tuple[str, Any]] = [("Horizon", _limit_text(within.total_seconds() / 86400))]
    for title, fps, rows in zip(titles, certs_in, buckets):
        summary.append((f"{title}: certificates", len(fps)))
        summary.append((f"{title}: locations", len(rows)))
    summary.append(("Locations without an owner", no_owner))
    sections = [Section(title, COLUMNS, rows, note) for title, rows, note in zip(titles, buckets, notes)]
    return Report(name="expiring", title=f"Certificates expiring within {_limit_text(limits[-1])}",
                  generated_at=now, summary=summary, sections=sections, params=dict(params))
