"""Reports for security and audit: ``certfleet report NAME``.

Each report is a builder in its own module that reads the registry (page by page
where the data is large) and returns a :class:`~collector.reports.model.Report`;
rendering (table, CSV, JSON, HTML) is in :mod:`collector.reports.render` and runs
in the CLI. The collector serves built reports over ``ReportService.GetReport``.

Adding a report (extension point)
---------------------------------
``REPORTS`` maps a report name to a :class:`ReportSpec`. To add one -- as the
``violations`` report (by rule, by owner, exceptions shown apart) was added --
write a module such as ``collector/reports/violations.py`` with::

    PARAMS = ("...",)                     # the parameters it takes (strings)
    def build(registry, params, now, team=None) -> Report: ...   # team: see owner_scoped

and add one entry to ``REPORTS`` below::

    "violations": ReportSpec("collector.reports.violations", "policy violations by rule and owner",
                             ("...",)),

Nothing else changes: the servicer, the wire format and the CLI (``certfleet
report violations --format html``) take any name in ``REPORTS``; ``permission``
is the admin permission the caller needs (collector/api/auth.py: ``read`` or
``audit_read``). ``owner_scoped`` reports may be read by role ``owner``: the builder
gets ``team`` and keeps only what that team owns (a location is the team's when its
resolved owner is the team, as in collector/domain/scope.py); the others cover the whole
fleet and are refused to the role (and the refusal audited).

Builders are named by module and imported when first built, so that the CLI, which
imports this package for rendering, does not pull in the registry (SQLAlchemy).

May import: the builders read the registry (``collector.registry``) and the pure
``collector.domain``; the package itself only ``collector.errors`` and its own model and
parameters. The wire form of a report is ``collector.api.report_codec``'s.
"""
from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from collector.errors import InvalidInput
from collector.reports.model import Report, Section, Value
from collector.reports.params import check_known


@dataclass(frozen=True)
class ReportSpec:
    module: str                    # has build(registry, params: Mapping[str, str], now) -> Report
    description: str
    params: tuple[str, ...] = ()   # accepted parameter names (the module's PARAMS)
    permission: str = "read"       # collector.api.auth permission: "read" or "audit_read"
    owner_scoped: bool = False     # role owner may read it, narrowed to its team (build(..., team=))

    def builder(self) -> Any:
        return importlib.import_module(self.module).build


REPORTS: dict[str, ReportSpec] = {
    "expiring": ReportSpec("collector.reports.expiring",
                           "what expires within 7, 30 and 90 days, with owner, environment and service",
                           ("within", "limit"), owner_scoped=True),
    "owners": ReportSpec("collector.reports.owners", "orphaned and unconfirmed certificates", owner_scoped=True),
    "coverage": ReportSpec("collector.reports.coverage", "agents, last reports, stores, scan errors, silent hosts",
                           ("silent_after",)),
    "audit": ReportSpec("collector.reports.audit",
                        "who requested, issued, installed, revoked or changed policy, when and why",
                        ("since", "until"), permission="audit_read"),
    "violations": ReportSpec("collector.reports.violations",
                             "policy violations by rule and owner, exceptions shown apart", owner_scoped=True),
}


def spec(name: str) -> ReportSpec:
    try:
        return REPORTS[name]
    except KeyError:
        raise InvalidInput(f"no report {name!r}; reports: {', '.join(sorted(REPORTS))}") from None


def team_refusal(name: str, team: str) -> str | None:
    """Why role owner (acting for ``team``) may not read report ``name``; None when it may (the
    report has a view for one team: ``owner_scoped``)."""
    if spec(name).owner_scoped:
        return None
    scoped = ", ".join(n for n, s in REPORTS.items() if s.owner_scoped)
    return (f"role owner (team {team}) may not read report {name}: it covers the whole fleet; "
            f"the team's reports are {scoped}")

def build(registry: Any, name: str, params: Mapping[str, str], now: dt.datetime, team: str | None = None) -> Report:
    """Build report ``name`` (unknown names and parameters are refused with InvalidInput);
    with ``team``, only what that team owns (only for ``owner_scoped`` reports)."""
    s = spec(name)
    check_known(name, params, s.params)
    if team is None:
        return s.builder()(registry, params, now)
    if not s.owner_scoped:
        raise InvalidInput(f"report {name!r} covers the whole fleet and has no view for one team")
    return s.builder()(registry, params, now, team=team)


__all__ = ["REPORTS", "Report", "ReportSpec", "Section", "Value", "build", "spec", "team_refusal"]
