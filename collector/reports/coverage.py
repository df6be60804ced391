"""``coverage``: is the fleet being watched? Agents, when each last reported, what they scan,
scan errors by reason, and hosts that went silent.

A host is *silent* when its active agent was last seen longer ago than ``silent_after``
(default ``1d``); revoked agents are listed but never counted as silent. *Stale services*:
files whose process still serves another certificate (a renewal without a reload).
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Mapping

from collector.registry.coverage import agent_coverage
from collector.reports import params as p
from collector.reports.expiring import stale_section
from collector.reports.model import Report, Section, ago, iso

PARAMS = ("silent_after",)
AGENT_COLUMNS = ("host", "agent_id", "status", "last_seen", "last_report", "stores", "locations", "scan_errors",
                 "silent")
REASON_COLUMNS = ("reason", "errors", "hosts", "example")
ERROR_COLUMNS = ("reason", "host", "store_type", "path", "message", "observed_at")
SILENT_COLUMNS = ("host", "agent_id", "last_seen", "silent_for")
MAX_HOSTS_LISTED = 5


def build(registry: Any, params: Mapping[str, str], now: dt.datetime) -> Report:
    silent_after = p.duration(params, "silent_after", "1d")
    extra = agent_coverage(registry)
    agent_rows: list[tuple] = []
    silent_rows: list[tuple] = []
    error_rows: list[tuple] = []
    by_reason: dict[str, list[tuple[str, str]]] = defaultdict(list)   # reason -> [(host, example)]
    active = stores = locs = reported = 0
    for a in registry.list_agents():
        cov = extra.get(a.agent_id)
        last_report = cov.last_report_at if cov else None
        silent = a.status == "active" and now - a.last_seen > silent_after
        active += a.status == "active"
        reported += last_report is not None
        stores += cov.stores if cov else 0
        locs += a.location_count
        agent_rows.append((a.hostname, a.agent_id, a.status, iso(a.last_seen), iso(last_report),
                           cov.stores if cov else 0, a.location_count, len(a.errors), silent))
        if silent:
            silent_rows.append((a.hostname, a.agent_id, iso(a.last_seen), ago(now - a.last_seen)))
        for e in a.errors:
            path = e.path + (f" [{e.alias}]" if e.alias else "")
            error_rows.append((e.reason, a.hostname, e.store_type, path, e.message, iso(e.observed_at)))
            by_reason[e.reason].append((a.hostname, f"{a.hostname}:{path}: {e.message}"))
    agent_rows.sort(key=lambda r: (r[0].lower(), r[1]))
    silent_rows.sort(key=lambda r: (r[2] or "", r[0]))
    error_rows.sort(key=lambda r: (r[0], r[1], r[3]))
    reason_rows = []
    for reason, items in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        hosts = sorted({h for h, _ in items})
        shown = ", ".join(hosts[:MAX_HOSTS_LISTED]) + (f" (+{len(hosts) - MAX_HOSTS_LISTED})"
                                                       if len(hosts) > MAX_HOSTS_LISTED else "")
        reason_rows.append((reason, len(items), shown, items[0][1]))

    stale = stale_section(registry)
    summary: list[tuple[str, Any]] = [
        ("Agents", len(agent_rows)),
        ("Active agents", active),
        ("Agents that never reported", len(agent_rows) - reported),
        (f"Silent hosts (not seen for {ago(silent_after)})", len(silent_rows)),
        ("Stores scanned", stores),
        ("Locations", locs),
        ("Scan errors", len(error_rows)),
        ("Scan error reasons", len(reason_rows)),
        ("Stale services", len(stale.rows)),
    ]
    return Report(
        name="coverage", title="Fleet coverage", generated_at=now, summary=summary,
        sections=[
            Section("Silent hosts", SILENT_COLUMNS, silent_rows, f"active agents not seen for {ago(silent_after)}"),
            Section("Agents", AGENT_COLUMNS, agent_rows,
                    "stores: distinct stores with a present certificate; last_report: last stored inventory"),
            Section("Scan errors by reason", REASON_COLUMNS, reason_rows),
            Section("Scan errors", ERROR_COLUMNS, error_rows, "from each agent's last report"),
            stale,
        ],
        params=dict(params),
    )
