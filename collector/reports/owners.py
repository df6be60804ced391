"""``owners``: orphaned and unconfirmed certificates, per present location.

- *Orphaned* (collector/domain/ownership.py ``orphan_reason``): the location resolves to no
  owner, to an owner name that is not registered, or to an owner without a working
  contact. The same judgement as ``certfleet owners orphans``.
- *Unconfirmed*: the owner is reachable, but it comes only from an agent's label hint
  (``owner=...``), not from an explicit assignment or an assignment rule. Confirm it
  with ``certfleet assign`` or a rule.

With ``team`` (role owner): only the locations whose resolved owner is the team -- orphaned
when the team has no working contact, unconfirmed when only a label names it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from collector.domain import ownership as own
from collector.reports.assigned import placed
from collector.reports.model import Report, Section, cn_or_dn, days_left, iso

PARAMS: tuple[str, ...] = ()
ORPHAN_COLUMNS = ("reason", "subject", "host", "path", "owner", "owner_source", "detail", "days_left",
                  "not_after", "fingerprint")
UNCONFIRMED_COLUMNS = ("subject", "host", "path", "owner", "environment", "service", "days_left", "not_after",
                       "fingerprint")


def build(registry: Any, params: Mapping[str, str], now: dt.datetime, team: str | None = None) -> Report:
    owners = {o.name: o for o in registry.owners.list_owners()}
    orphaned: list[tuple] = []
    unconfirmed: list[tuple] = []
    reasons = dict.fromkeys(own.ORPHAN_REASONS, 0)
    certs: set[str] = set()
    orphan_certs: set[str] = set()
    unconfirmed_certs: set[str] = set()
    locations = 0
    for pl, a in placed(registry):
        if team is not None and a.owner != team:
            continue
        certs.add(pl.fingerprint)
        locations += 1
        where = pl.path + (f" [{pl.alias}]" if pl.alias else "")
        why = own.orphan_reason(a, owners)
        if why is not None:
            reasons[why[0]] += 1
            orphan_certs.add(pl.fingerprint)
            orphaned.append((why[0], cn_or_dn(pl.subject), pl.hostname, where, a.owner, a.sources.get("owner"),
                             why[1], days_left(pl.not_after, now), iso(pl.not_after), pl.fingerprint))
        elif a.sources.get("owner") == own.SOURCE_LABEL:
            unconfirmed_certs.add(pl.fingerprint)
            unconfirmed.append((cn_or_dn(pl.subject), pl.hostname, where, a.owner, a.environment, a.service,
                                days_left(pl.not_after, now), iso(pl.not_after), pl.fingerprint))
    orphaned.sort(key=lambda r: (own.ORPHAN_REASONS.index(r[0]), r[7], r[2], r[3]))
    shown_owners = owners if team is None else {k: v for k, v in owners.items() if k == team}
    summary: list[tuple[str, Any]] = [
        *((("Team", team),) if team is not None else ()),
        ("Certificates present", len(certs)),
        ("Locations present", locations),
        ("Orphaned certificates", len(orphan_certs)),
        ("Orphaned locations", len(orphaned)),
        *((f"Orphaned locations: {r}", n) for r, n in reasons.items()),
        ("Unconfirmed certificates", len(unconfirmed_certs)),
        ("Unconfirmed locations", len(unconfirmed)),
        ("Registered owners", len(shown_owners)),
        ("Owners without a working contact", sum(1 for o in shown_owners.values() if not o.working)),
    ]
    title = "Certificate ownership: orphaned and unconfirmed" + (f" (team {team})" if team is not None else "")
    return Report(
        name="owners", title=title, generated_at=now, summary=summary,
        sections=[
            Section("Orphaned", ORPHAN_COLUMNS, orphaned,
                    "no owner, an owner that is not registered, or an owner without a working contact"),
            Section("Unconfirmed", UNCONFIRMED_COLUMNS, unconfirmed,
                    "owner known only from an agent label hint; confirm with a rule or an explicit assignment"),
        ],
        params=dict(params),
    )
