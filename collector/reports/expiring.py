"""``expiring``: what expires within 7, 30 and 90 days, per location, with its owner and service.

Windows (disjoint, soonest first): expired but still installed, then one per threshold:
within 7 days, 8-30 days, 31-90 days (a window holds not_after from its start up to, not
including, its end). ``within`` (default ``90d``) moves the horizon; thresholds beyond it
are dropped and it becomes the last one. Owner, environment, criticality and service come
from collector/domain/ownership.py (explicit assignment, rules, then label hints) per location.

The full report (no ``limit``): the summary (certificates and locations per window,
locations without an owner), *By owner* (locations per owner and window), then every
location of every window. Read column-only, a page at a time (collector/reports/assigned.py),
ownership resolved with a memo and the explicit assignments read in bulk.

``limit`` N (what ``certfleet report expiring`` asks for in a table: 100): the counts per
window come from one aggregate in the database and each window shows its soonest N
locations, owners resolved for those only; *By owner* and the unowned count need every
location resolved and are in the full report (``--all``, or CSV, JSON and HTML, which are
full unless ``--limit`` is given). At fleet size a window holds tens of thousands of
locations, which no one reads in a terminal, and reading and resolving them all takes
seconds; the cut windows say how many rows they left out.

A ``team`` (role owner) keeps only the locations whose resolved owner is that team (every
window location is resolved to know, also with a ``limit``).

Trust anchors (entries of a system or Java trust store) are left out: they are not renewed,
and a distribution's expiring roots would flood the report. *Stale services* lists the
locations whose process still serves another certificate than the file holds (the renewal
that was never reloaded), with both fingerprints, the endpoint and since when
(collector/registry/discovery.py; the team's only for role owner).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from collector.domain import ownership as own
from collector.registry.expiry import ExpiryStore
from collector.reports import params as p
from collector.reports.assigned import placed
from collector.reports.model import Report, Section, cn_or_dn, days_left, iso

PARAMS = ("within", "limit")
THRESHOLDS_DAYS = (7, 30, 90)
COLUMNS = ("days_left", "not_after", "subject", "host", "path", "service", "owner", "environment",
           "criticality", "owner_source", "fingerprint")
NO_OWNER = "(no owner)"


def thresholds(within: dt.timedelta) -> list[float]:
    """The section limits in days: the standard ones below the horizon, then the horizon."""
    horizon = within.total_seconds() / 86400
    return [float(t) for t in THRESHOLDS_DAYS if t < horizon] + [horizon]


def _limit_text(days: float) -> str:
    return f"{days:g} days" if days >= 1 else f"{days * 24:g} hours"


def _row(pl: Any, a: Any, now: dt.datetime) -> tuple:
    return (days_left(pl.not_after, now), iso(pl.not_after), cn_or_dn(pl.subject), pl.hostname,
            pl.path + (f" [{pl.alias}]" if pl.alias else ""), a.service, a.owner, a.environment, a.criticality,
            a.sources.get("owner"), pl.fingerprint)


STALE_COLUMNS = ("host", "path", "file_fingerprint", "served_fingerprint", "endpoint", "since", "owner")


def stale_section(registry: Any, team: str | None = None) -> Section:
    """Locations whose process serves another certificate than the file holds, oldest first."""
    rows = [(v.hostname, v.path + (f" [{v.alias}]" if v.alias else ""), v.file_fingerprint, v.served_fingerprint,
             v.endpoint, iso(v.since), v.owner or NO_OWNER)
            for v in registry.discovery.stale_with_owners(team=team)]
    return Section("Stale services", STALE_COLUMNS, rows,
                   "the file holds a newer certificate than its process serves: reload the service "
                   "(certfleet stale shows the process and the reload that fits)")


def build(registry: Any, params: Mapping[str, str], now: dt.datetime, team: str | None = None) -> Report:
    within = p.duration(params, "within", "90d")
    limit = p.limit(params)
    limits = thresholds(within)
    # window k covers edges[k-1] <= not_after < edges[k]; window 0 (expired) is not_after < now
    edges = [now] + [now + dt.timedelta(days=t) for t in limits]
    titles = ["Expired, still installed"] + [f"Within {_limit_text(t)}" for t in limits]
    notes = ["past not_after and still present on a host", f"expiring within {_limit_text(limits[0])}"] + [
        f"expiring after {_limit_text(lo)} and within {_limit_text(hi)}" for lo, hi in zip(limits, limits[1:])]
    buckets: list[list[tuple]] = [[] for _ in titles]
    located = [0] * len(titles)                        # locations per window (shown or not)
    certs_in = [0] * len(titles)
    by_owner: dict[str, list[int]] | None = None       # None: not counted (a cut report for everyone)
    no_owner: int | None = None

    if limit is not None and team is None:
        # What a person reads: the counts of every window (an aggregate in the database) and the
        # soonest ``limit`` locations of each; owners are resolved for those rows only.
        store = ExpiryStore(registry.engine)
        for k, (n_certs, n_locs) in enumerate(store.counts(edges, services_only=True)):
            certs_in[k], located[k] = n_certs, n_locs
        if limit:
            resolver = own.Resolver(registry.owners.list_rules())
            explicit = store.explicit(edges[-1])
            for k in range(len(titles)):
                for pl, a in placed(registry, edges[k], since=edges[k - 1] if k else None, batch=limit + 1,
                                    resolver=resolver, explicit=explicit, services_only=True):
                    buckets[k].append(_row(pl, a, now))
                    if len(buckets[k]) >= limit:
                        break
    else:
        by_owner, no_owner = {}, 0
        last_fp, k = None, 0
        counted_fp: str | None = None
        for pl, a in placed(registry, edges[-1], services_only=True):
            if pl.fingerprint != last_fp:              # the locations of one certificate come together
                last_fp = pl.fingerprint
                k = next((w for w, e in enumerate(edges) if pl.not_after < e), len(edges) - 1)
            if team is not None and a.owner != team:
                continue
            if counted_fp != pl.fingerprint:
                counted_fp = pl.fingerprint
                certs_in[k] += 1
            located[k] += 1
            counts = by_owner.get(a.owner or NO_OWNER)
            if counts is None:
                counts = by_owner[a.owner or NO_OWNER] = [0] * len(titles)
            counts[k] += 1
            no_owner += a.owner is None
            if limit is None or len(buckets[k]) < limit:
                buckets[k].append(_row(pl, a, now))

    summary: list[tuple[str, Any]] = [("Horizon", _limit_text(within.total_seconds() / 86400))]
    if team is not None:
        summary.append(("Team", team))
    for title, n_certs, n_locs in zip(titles, certs_in, located):
        summary.append((f"{title}: certificates", n_certs))
        summary.append((f"{title}: locations", n_locs))
    if no_owner is not None:
        summary.append(("Locations without an owner", no_owner))
    if limit is not None:
        summary.append(("Detail rows per window", f"at most {limit}, the soonest (--all for every row)"))
    sections = []
    if by_owner is not None:
        owner_columns = ("owner", "expired", *(f"within_{_limit_text(t).replace(' ', '_')}" for t in limits),
                         "locations")
        owner_rows = [(o, *counts, sum(counts)) for o, counts in sorted(
            by_owner.items(), key=lambda kv: (kv[0] == NO_OWNER, -sum(kv[1][:2]), -sum(kv[1]), kv[0]))]
        sections.append(Section("By owner", owner_columns, owner_rows,
                                "locations per owner in each window (expired, then disjoint windows), "
                                "most urgent first"))
    else:
        summary.append(("Locations per owner", "in the full report (--all, or --format csv, json or html)"))
    for title, rows, note, n in zip(titles, buckets, notes, located):
        if len(rows) < n:
            note += f"; showing the soonest {len(rows)} of {n} (--all for every row)"
        sections.append(Section(title, COLUMNS, rows, note))
    stale = stale_section(registry, team)
    summary.append(("Stale services", len(stale.rows)))
    sections.append(stale)
    title = f"Certificates expiring within {_limit_text(limits[-1])}"
    if team is not None:
        title += f" (team {team})"
    return Report(name="expiring", title=title, generated_at=now, summary=summary, sections=sections,
                  params=dict(params))
