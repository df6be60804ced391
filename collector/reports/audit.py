"""``audit``: who requested, approved, issued, installed, revoked or changed policy or ownership,
when and why, for a time range (``since`` inclusive, ``until`` exclusive; default: the last 30 days).

Reads the hash-chained audit trail (``Registry.audit.events``, streamed page by page,
oldest first) and puts each event in one section by what it did (:func:`category`).
Needs the ``audit_read`` permission (admin, auditor).
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, Mapping

from collector.errors import InvalidInput
from collector.reports import params as p
from collector.reports.model import Report, Section, iso

PARAMS = ("since", "until")
DEFAULT_RANGE = dt.timedelta(days=30)
COLUMNS = ("at", "actor", "action", "target", "reason", "seq")
# (key, section title), in the order shown
CATEGORIES = (
    ("requested", "Requested"),
    ("approved", "Approved"),
    ("issued", "Issued"),
    ("installed", "Installed and verified"),
    ("failed", "Failed, rolled back or cancelled"),
    ("revoked", "Revoked"),
    ("policy", "Policy and exception changes"),
    ("ownership", "Ownership changes"),
    ("access", "Enrollment and access"),
    ("refused", "Refused calls"),
    ("other", "Other"),
)


def category(action: str) -> str:
    """The section an audit action belongs to (see CATEGORIES)."""
    a = action.lower()
    head, _, last = a.rpartition(".")
    if a == "call.refused":
        return "refused"
    if "revoke" in last:
        return "revoked"
    if "approve" in last:
        return "approved"
    if a.startswith(("policy.", "exception.")) or a in ("policy", "exception"):
        return "policy"
    if a.startswith(("owner.", "rule.", "assignment.")):
        return "ownership"
    if last in ("request", "requested", "retry") or a == "renewal.request":
        return "requested"
    if last in ("issued", "issue", "csr_received", "key_pending"):
        return "issued"
    if last in ("installing", "installed", "install", "verified"):
        return "installed"
    if last in ("failed", "rolled_back", "cancelled", "stuck"):
        return "failed"
    if a.startswith(("token.", "enroll", "admin.", "agent.")) or a == "enroll":
        return "access"
    return "other"


def build(registry: Any, params: Mapping[str, str], now: dt.datetime) -> Report:
    until = p.time(params, "until")
    since = p.time(params, "since")
    if since is None:
        since = (until or now) - DEFAULT_RANGE
    if until is not None and until <= since:
        raise InvalidInput(f"until ({iso(until)}) must be after since ({iso(since)})")
    rows: dict[str, list[tuple]] = {k: [] for k, _ in CATEGORIES}
    actors: Counter[str] = Counter()
    total = 0
    for e in registry.audit.events(since, until):
        total += 1
        actors[e.actor] += 1
        rows[category(e.action)].append((iso(e.at), e.actor, e.action, e.target, e.reason, e.seq))
    summary: list[tuple[str, Any]] = [
        ("Since", iso(since)),
        ("Until", iso(until) if until else f"{iso(now)} (now)"),
        ("Events", total),
        *((title, len(rows[k])) for k, title in CATEGORIES),
        ("Actors", len(actors)),
        ("Most active actor", f"{actors.most_common(1)[0][0]} ({actors.most_common(1)[0][1]})" if actors else None),
    ]
    return Report(
        name="audit", title="Audit trail: who did what, when and why", generated_at=now, summary=summary,
        sections=[Section(title, COLUMNS, rows[k]) for k, title in CATEGORIES],
        params=dict(params),
    )
