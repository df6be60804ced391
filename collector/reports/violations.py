"""``violations``: active policy violations by rule and by owner, with exceptions shown apart.

Sections:

- *By rule* / *By owner*: the active violations that no exception in force waives (the
  same rows, ordered by rule or by owner; the counts are in the section note and summary);
- *Waived by exceptions*: active violations an exception in force waives, with the
  exception's id, reason, who granted it and when it expires;
- *Expired exceptions*: exceptions past their expiry (their violations apply again).

Violations are read through ``registry.policies`` (collector/registry/policies.py); owner
and environment are those collector/domain/ownership.py resolved when the violation was last
evaluated (the violation row keeps them).

With ``team`` (role owner): only the violations whose owner is the team (as of their last
evaluation, which runs after every inventory report and on the policy schedule), the
exceptions that waive them, and the expired exceptions granted for the team or for one of
the certificates it has violations on (pattern exceptions span teams and are not shown).
"""
from __future__ import annotations

import collections
import datetime as dt
from typing import Any, Mapping

from collector.reports.model import Report, Section, cn_or_dn, iso

PARAMS: tuple[str, ...] = ()
COLUMNS = ("fingerprint", "subject", "host", "path", "rule", "reason", "first_seen", "owner", "environment")
WAIVED_COLUMNS = COLUMNS + ("exception_id", "exception_reason", "granted_by", "expires_at")
EXPIRED_COLUMNS = ("exception_id", "rule", "target", "reason", "granted_by", "created_at", "expires_at")
NO_OWNER = "(no owner)"


def _counts(counter: collections.Counter) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(counter.items())) or "none"


def build(registry: Any, params: Mapping[str, str], now: dt.datetime, team: str | None = None) -> Report:
    pols = registry.policies
    exceptions = {e.id: e for e in pols.list_exceptions(now)}
    active: list[tuple] = []
    waived: list[tuple] = []
    by_rule: collections.Counter = collections.Counter()
    by_owner: collections.Counter = collections.Counter()
    certs: set[str] = set()
    team_fps: set[str] = set()
    waiving: set[int] = set()
    for v in pols.list_violations(now, include_excepted=True, owner=team or ""):
        if team is not None:
            if v.owner != team:
                continue
            team_fps.add(v.fingerprint)
        row = (v.fingerprint, cn_or_dn(v.subject), v.hostname, v.path + (f" [{v.alias}]" if v.alias else ""),
               v.rule, v.reason, iso(v.first_seen), v.owner or None, v.environment or None)
        e = exceptions.get(v.exception_id) if v.exception_id is not None else None
        if e is not None:
            waived.append(row + (e.id, e.reason, e.granted_by, iso(e.expires_at)))
            waiving.add(e.id)
            continue
        active.append(row)
        certs.add(v.fingerprint)
        by_rule[v.rule] += 1
        by_owner[v.owner or NO_OWNER] += 1
    rule_rows = sorted(active, key=lambda r: (r[4], r[7] or "", r[2], r[3], r[0]))
    owner_rows = sorted(active, key=lambda r: (r[7] is None, r[7] or "", r[4], r[2], r[3], r[0]))
    waived.sort(key=lambda r: (r[4], r[7] or "", r[2], r[3], r[0]))
    expired = [(e.id, e.rule, e.target, e.reason, e.granted_by, iso(e.created_at), iso(e.expires_at))
               for e in pols.list_exceptions(now, expired=True)
               if team is None or e.owner == team or (e.fingerprint and e.fingerprint in team_fps)]
    in_force = (sum(1 for e in exceptions.values() if not e.expired(now)) if team is None
                else len(waiving | {e.id for e in exceptions.values() if not e.expired(now) and e.owner == team}))
    summary: list[tuple[str, Any]] = [
        *((("Team", team),) if team is not None else ()),
        ("Policy version", pols.current().version),
        ("Active violations", len(active)),
        ("Certificates with active violations", len(certs)),
        *((f"Rule {k}", n) for k, n in sorted(by_rule.items())),
        *((f"Owner {k}", n) for k, n in sorted(by_owner.items())),
        ("Waived by exceptions", len(waived)),
        ("Exceptions in force", in_force),
        ("Expired exceptions", len(expired)),
    ]
    sections = [
        Section("By rule", COLUMNS, rule_rows, f"active violations per rule: {_counts(by_rule)}"),
        Section("By owner", COLUMNS, owner_rows, f"active violations per owner: {_counts(by_owner)}"),
        Section("Waived by exceptions", WAIVED_COLUMNS, waived,
                f"{len(waived)} active violation(s) waived by an exception in force"),
        Section("Expired exceptions", EXPIRED_COLUMNS, expired,
                "past their expiry: the violations they waived apply again"),
    ]
    title = "Policy violations by rule and owner" + (f" (team {team})" if team is not None else "")
    return Report(name="violations", title=title, generated_at=now,
                  summary=summary, sections=sections, params=dict(params))
