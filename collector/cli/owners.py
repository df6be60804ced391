"""``certfleet owners ...`` and ``certfleet assign``: who answers for which certificate.

    certfleet owners list [--format table|json]
    certfleet owners add NAME --email A [--email B] [--webhook URL] [--escalation E] [--description TEXT]
    certfleet owners update NAME [--email A ...] [--add-email A] [--remove-email A] [--no-email]
                               [--webhook URL] [--escalation E] [--description TEXT] [--rename NEW]
    certfleet owners remove NAME
    certfleet owners rules list [--format table|json]
    certfleet owners rules add --name N [--owner O] [--environment E] [--criticality C] [--service S]
                               [--host GLOB] [--path GLOB] [--san GLOB] [--issuer TEXT] [--label k=v ...]
                               [--priority N] [--description TEXT]
    certfleet owners rules remove NAME
    certfleet owners rules reorder NAME [NAME ...]     these first, in this order
    certfleet owners orphans [--format table|json|csv]
    certfleet owners explain FINGERPRINT [--format table|json]    the resolved assignment per location
    certfleet owners assignments [--format table|json]            the explicit assignments
    certfleet assign FINGERPRINT [--owner O] [--environment E] [--criticality C] [--service S]
                                 [--location PATH [--host H] [--agent ID] [--alias A]]
    certfleet unassign FINGERPRINT [--location PATH ...]

Changes take a ``--reason`` for the audit trail. Reading needs any admin role;
changes the role admin or operator. Rules, globs and precedence: collector/domain/ownership.py.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from typing import Any, Iterable

import grpc

from certfleet.v1 import governance_pb2 as pb
from certfleet.v1 import governance_pb2_grpc
from collector.cli.command import TIMEOUT, add_format, add_group, handles, terminal_width, utcnow
from collector.reports.text import SafeCsv
from collector.cli.format import days_left, dumps, iso, render_table, short_dn, ts
from collector.domain.ownership import CRITICALITIES
from collector.errors import InvalidInput


def _stub(channel: grpc.Channel) -> governance_pb2_grpc.GovernanceServiceStub:
    return governance_pb2_grpc.GovernanceServiceStub(channel)


def _labels(items: Iterable[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise InvalidInput(f"--label {item!r}: use NAME=VALUE, e.g. --label environment=prod")
        out[k.strip()] = v.strip()
    return out


def _where(ns: argparse.Namespace) -> pb.LocationSelection:
    sel = pb.LocationSelection(path=ns.location or "", hostname=ns.host or "", agent_id=ns.agent or "",
                               alias=ns.alias or "")
    return sel


# -- dicts for JSON ------------------------------------------------------------------------


def owner_dict(o: pb.OwnerInfo) -> dict[str, Any]:
    return {
        "name": o.name, "contacts": list(o.contacts), "webhook": o.webhook or None,
        "escalation": o.escalation or None, "description": o.description, "working_contact": o.working_contact,
        "created_at": iso(ts(o.created_at, o.HasField("created_at"))),
        "updated_at": iso(ts(o.updated_at, o.HasField("updated_at"))),
    }


def rule_dict(r: pb.AssignmentRuleInfo) -> dict[str, Any]:
    sets = {k: getattr(r, k) for k in ("owner", "environment", "criticality", "service") if getattr(r, k)}
    when: dict[str, Any] = {k: getattr(r, k) for k in ("host", "path", "san", "issuer") if getattr(r, k)}
    if r.labels:
        when["labels"] = dict(r.labels)
    return {"name": r.name, "priority": r.priority, "sets": sets, "when": when, "description": r.description,
            "created_by": r.created_by,
            "created_at": iso(ts(r.created_at, r.HasField("created_at")))}


def assignment_dict(a: pb.AssignmentInfo) -> dict[str, Any]:
    return {"owner": a.owner or None, "environment": a.environment or None, "criticality": a.criticality or None,
            "service": a.service or None, "source": a.source or None, "sources": dict(a.sources)}


def explicit_dict(e: pb.ExplicitAssignmentInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"scope": e.scope}
    if e.scope == "certificate":
        d["fingerprint_sha256"] = e.fingerprint_sha256
    else:
        d.update(agent=e.agent_id, host=e.hostname, store_type=e.store_type, path=e.path, alias=e.alias)
    d.update({k: getattr(e, k) or None for k in ("owner", "environment", "criticality", "service")})
    d.update(reason=e.reason, assigned_by=e.assigned_by,
             updated_at=iso(ts(e.updated_at, e.HasField("updated_at"))))
    return d


def orphan_dict(o: pb.OrphanInfo, now: dt.datetime) -> dict[str, Any]:
    not_after = ts(o.not_after, o.HasField("not_after"))
    return {
        "fingerprint_sha256": o.fingerprint_sha256, "subject": o.subject, "issuer": o.issuer,
        "not_after": iso(not_after),
        "days_left": days_left(not_after, now) if not_after else None,
        "reason": o.reason, "detail": o.detail,
        "locations": [
            {"agent": loc.agent_id, "host": loc.hostname, "store_type": loc.store_type, "path": loc.path,
             "alias": loc.alias, "chain_index": loc.chain_index, "reason": loc.reason, "detail": loc.detail,
             **{k: v for k, v in assignment_dict(loc.assignment).items() if k != "sources"}}
            for loc in o.locations
        ],
    }


def _where_text(host: str, path: str, alias: str) -> str:
    return f"{host}:{path}" + (f" [{alias}]" if alias else "")


# -- owners ------------------------------------------------------------------------------------


def cmd_owners_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    owners = [o for page in _stub(channel).ListOwners(pb.ListOwnersRequest(), timeout=TIMEOUT) for o in page.owners]
    if ns.format == "json":
        print(dumps([owner_dict(o) for o in owners]))
        return 0
    if not owners:
        print("no owners yet (certfleet owners add NAME --email team@example.com)")
        return 0
    rows = [[o.name, ", ".join(o.contacts) or "-", o.webhook or "-", o.escalation or "-",
             "yes" if o.working_contact else "NO", o.description] for o in owners]
    sys.stdout.write(render_table(["OWNER", "CONTACTS", "WEBHOOK", "ESCALATION", "WORKING", "DESCRIPTION"],
                                  rows, terminal_width(), flex=1))
    return 0


def _report_owner(o: pb.OwnerInfo, verb: str) -> None:
    print(f"owner {o.name} {verb}: contacts {', '.join(o.contacts) or 'none'}"
          + (f", webhook {o.webhook}" if o.webhook else "") + (f", escalation {o.escalation}" if o.escalation else ""))
    if not o.working_contact:
        print(f"warning: owner {o.name} has no working contact (no e-mail address, no https webhook); "
              "its certificates are listed as orphans", file=sys.stderr)


def cmd_owners_add(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    o = _stub(channel).CreateOwner(pb.CreateOwnerRequest(
        name=ns.name, contacts=ns.email or [], webhook=ns.webhook or "", escalation=ns.escalation or "",
        description=ns.description or "", reason=ns.reason or "",
    ), timeout=TIMEOUT)
    _report_owner(o, "added")
    return 0


def cmd_owners_update(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    req = pb.UpdateOwnerRequest(name=ns.name, reason=ns.reason or "", add_contacts=ns.add_email or [],
                                remove_contacts=ns.remove_email or [])
    if ns.email is not None or ns.no_email:
        req.replace_contacts = True
        req.contacts.extend(ns.email or [])
    for field, value in (("new_name", ns.rename), ("webhook", ns.webhook), ("escalation", ns.escalation),
                         ("description", ns.description)):
        if value is not None:
            setattr(req, field, value)
    o = _stub(channel).UpdateOwner(req, timeout=TIMEOUT)
    _report_owner(o, "updated")
    return 0


def cmd_owners_remove(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    _stub(channel).DeleteOwner(pb.DeleteOwnerRequest(name=ns.name, reason=ns.reason or ""), timeout=TIMEOUT)
    print(f"owner {ns.name.lower()} removed")
    return 0


# -- rules -------------------------------------------------------------------------------------


def _when_text(when: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in when.items() if k != "labels"]
    parts += [f"label:{k}={v}" for k, v in when.get("labels", {}).items()]
    return " ".join(parts)


def rules_table(rules: list[pb.AssignmentRuleInfo], width: int) -> str:
    if not rules:
        return "no assignment rules (certfleet owners rules add --name N --owner O --path '/etc/ssl/**')\n"
    rows = []
    for r in rules:
        d = rule_dict(r)
        sets = " ".join(f"{k}={v}" for k, v in d["sets"].items())
        rows.append([str(r.priority), r.name, sets, _when_text(d["when"]) or "(everything)"])
    return render_table(["PRIORITY", "RULE", "SETS", "WHEN"], rows, width, flex=3)


def _rules(channel: grpc.Channel) -> list[pb.AssignmentRuleInfo]:
    return [r for page in _stub(channel).ListRules(pb.ListRulesRequest(), timeout=TIMEOUT) for r in page.rules]


def cmd_rules_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    rules = _rules(channel)
    if ns.format == "json":
        print(dumps([rule_dict(r) for r in rules]))
    else:
        sys.stdout.write(rules_table(rules, terminal_width()))
    return 0


def cmd_rules_add(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    req = pb.AddRuleRequest(
        name=ns.name, owner=ns.owner or "", environment=ns.environment or "", criticality=ns.criticality or "",
        service=ns.service or "", host=ns.host or "", path=ns.path or "", san=ns.san or "", issuer=ns.issuer or "",
        labels=_labels(ns.label), description=ns.description or "", reason=ns.reason or "",
    )
    if ns.priority is not None:
        req.priority = ns.priority
    r = _stub(channel).AddRule(req, timeout=TIMEOUT)
    d = rule_dict(r)
    print(f"rule {r.name} added at priority {r.priority}: sets "
          + " ".join(f"{k}={v}" for k, v in d["sets"].items())
          + (f" when {_when_text(d['when'])}" if d["when"] else " for every certificate"))
    return 0


def cmd_rules_remove(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = _stub(channel).RemoveRule(pb.RemoveRuleRequest(name=ns.name, reason=ns.reason or ""), timeout=TIMEOUT)
    print(f"rule {r.name} (priority {r.priority}) removed")
    return 0


def cmd_rules_reorder(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    page = _stub(channel).ReorderRules(pb.ReorderRulesRequest(names=ns.names, reason=ns.reason or ""),
                                       timeout=TIMEOUT)
    sys.stdout.write(rules_table(list(page.rules), terminal_width()))
    return 0


# -- assignments -----------------------------------------------------------------------------------


def cmd_assign(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    if ns.location is None and (ns.host or ns.agent or ns.alias):
        raise InvalidInput("--host, --agent and --alias narrow --location PATH; give --location too")
    req = pb.AssignRequest(fingerprint_prefix=ns.fingerprint, reason=ns.reason or "")
    given = False
    for field in ("owner", "environment", "criticality", "service"):
        value = getattr(ns, field)
        if value is not None:
            setattr(req, field, value)
            given = True
    if not given:
        raise InvalidInput("give --owner, --environment, --criticality or --service (or use certfleet unassign)")
    if ns.location is not None:
        req.where.CopyFrom(_where(ns))
    r = _stub(channel).Assign(req, timeout=TIMEOUT)
    if not r.assignments:
        print("nothing left to assign: the explicit assignment was removed")
    for e in r.assignments:
        what = (f"certificate {e.fingerprint_sha256[:16]}" if e.scope == "certificate"
                else f"location {_where_text(e.hostname or e.agent_id, e.path, e.alias)}")
        sets = ", ".join(f"{k}={getattr(e, k)}" for k in ("owner", "environment", "criticality", "service")
                         if getattr(e, k))
        print(f"{what}: {sets}")
    return 0


def cmd_unassign(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    req = pb.UnassignRequest(fingerprint_prefix=ns.fingerprint, reason=ns.reason or "")
    if ns.location is not None:
        req.where.CopyFrom(_where(ns))
    r = _stub(channel).Unassign(req, timeout=TIMEOUT)
    print(f"{r.removed} explicit assignment(s) removed; rules and labels apply again")
    return 0


def cmd_assignments(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    items = [e for page in _stub(channel).ListAssignments(pb.ListAssignmentsRequest(), timeout=TIMEOUT)
             for e in page.assignments]
    if ns.format == "json":
        print(dumps([explicit_dict(e) for e in items]))
        return 0
    if not items:
        print("no explicit assignments (certfleet assign FINGERPRINT --owner O)")
        return 0
    rows = []
    for e in items:
        target = (e.fingerprint_sha256[:16] if e.scope == "certificate"
                  else _where_text(e.hostname or e.agent_id, e.path, e.alias))
        rows.append([e.scope, target, e.owner or "-", e.environment or "-", e.criticality or "-", e.service or "-",
                     e.assigned_by, e.reason])
    sys.stdout.write(render_table(
        ["SCOPE", "TARGET", "OWNER", "ENVIRONMENT", "CRITICALITY", "SERVICE", "BY", "REASON"], rows, terminal_width(), flex=1))
    return 0


def cmd_explain(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    ca = _stub(channel).GetAssignment(pb.GetAssignmentRequest(fingerprint_prefix=ns.fingerprint), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps({
            "fingerprint_sha256": ca.fingerprint_sha256, "subject": ca.subject, "issuer": ca.issuer,
            "not_after": iso(ts(ca.not_after, ca.HasField("not_after"))),
            "certificate": assignment_dict(ca.certificate),
            "locations": [
                {"agent": loc.agent_id, "host": loc.hostname, "store_type": loc.store_type, "path": loc.path,
                 "alias": loc.alias, "chain_index": loc.chain_index, "status": loc.status,
                 "labels": dict(loc.labels), **assignment_dict(loc.assignment)}
                for loc in ca.locations
            ],
            "explicit": [explicit_dict(e) for e in ca.explicit],
        }))
        return 0
    lines = [f"Certificate:  {ca.fingerprint_sha256}", f"Subject:      {ca.subject}"]

    def attrs(a: pb.AssignmentInfo) -> str:
        parts = [f"{k}={getattr(a, k)} ({a.sources.get(k, '?')})"
                 for k in ("owner", "environment", "criticality", "service") if getattr(a, k)]
        return ", ".join(parts) if parts else "nothing assigned"

    if not ca.locations:
        lines.append(f"Assignment:   {attrs(ca.certificate)}")
    else:
        lines.append(f"Locations:    {len(ca.locations)}")
    for loc in ca.locations:
        lines.append(f"  - [{loc.status}] {_where_text(loc.hostname, loc.path, loc.alias)} #{loc.chain_index}: "
                     f"{attrs(loc.assignment)}" + ("" if loc.assignment.owner else "  <- no owner"))
    if ca.explicit:
        lines.append("Explicit assignments:")
        for e in ca.explicit:
            d = explicit_dict(e)
            target = "the certificate" if e.scope == "certificate" else _where_text(e.hostname or e.agent_id, e.path, e.alias)
            sets = ", ".join(f"{k}={d[k]}" for k in ("owner", "environment", "criticality", "service") if d[k])
            lines.append(f"  - {target}: {sets} (by {e.assigned_by}{'; ' + e.reason if e.reason else ''})")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# -- orphans ----------------------------------------------------------------------------------------


ORPHAN_CSV_FIELDS = ["fingerprint_sha256", "subject", "not_after", "days_left", "reason", "host", "store_type",
                     "path", "alias", "chain_index", "owner", "detail"]


def cmd_orphans(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    now = utcnow()
    orphans = (o for page in _stub(channel).ListOrphans(pb.ListOrphansRequest(), timeout=TIMEOUT)
               for o in page.orphans)
    if ns.format == "json":
        out = sys.stdout
        out.write("[")
        for i, o in enumerate(orphans):
            out.write(("," if i else "") + "\n" + dumps(orphan_dict(o, now)))
        out.write("\n]\n")
        return 0
    if ns.format == "csv":
        w = SafeCsv(csv.DictWriter(sys.stdout, fieldnames=ORPHAN_CSV_FIELDS, extrasaction="ignore"))
        w.writeheader()
        for o in orphans:
            d = orphan_dict(o, now)
            for loc in d["locations"]:
                w.writerow({**d, **loc, "reason": loc["reason"], "detail": loc["detail"], "owner": loc["owner"] or ""})
        return 0
    rows = []
    for o in orphans:
        d = orphan_dict(o, now)
        first = d["locations"][0] if d["locations"] else {}
        more = f" (+{len(d['locations']) - 1})" if len(d["locations"]) > 1 else ""
        left = d["days_left"]
        rows.append([
            "-" if left is None else ("EXPIRED" if left < 0 else str(left)),
            short_dn(o.subject) or "(empty subject)", o.reason, first.get("owner") or "-",
            _where_text(first.get("host", ""), first.get("path", ""), first.get("alias", "")) + more,
            o.fingerprint_sha256[:12],
        ])
    if not rows:
        print("no orphans: every certificate has an owner with a working contact")
        return 0
    sys.stdout.write(render_table(["DAYS", "SUBJECT", "REASON", "OWNER", "WHERE", "FINGERPRINT"], rows,
                                  terminal_width(), flex=4))
    print(f"{len(rows)} orphaned certificate{'s' if len(rows) != 1 else ''}")
    return 0


# -- parser ------------------------------------------------------------------------------------------


def _location_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--location", metavar="PATH", help="only the certificate's location(s) with this path "
                   "(assigned as a location: kept when the certificate there is renewed)")
    s.add_argument("--host", help="with --location: only on this host")
    s.add_argument("--agent", help="with --location: only on this agent id")
    s.add_argument("--alias", help="with --location: the keystore alias")
    s.add_argument("--reason", help="why (kept in the audit trail)")


def register(subparsers: Any) -> None:
    """Add ``owners``, ``assign`` and ``unassign`` to the ``certfleet`` parser's subcommands."""
    owners = add_group(subparsers, "owners", "owners, assignment rules, orphans")
    s = owners.add_parser("list", help="list owners and whether they can be reached")
    add_format(s, "table", "json")
    handles(s, cmd_owners_list)

    s = owners.add_parser("add", help="add an owner (a team or role, not a person)")
    s.add_argument("name")
    s.add_argument("--email", action="append", metavar="ADDRESS", help="contact e-mail address (repeatable)")
    s.add_argument("--webhook", metavar="URL", help="webhook URL (https counts as a working contact)")
    s.add_argument("--escalation", metavar="ADDRESS", help="e-mail address told when a notice is escalated")
    s.add_argument("--description")
    s.add_argument("--reason", help="why (kept in the audit trail)")
    handles(s, cmd_owners_add)

    s = owners.add_parser("update", help="change an owner's contacts, webhook, escalation, description or name")
    s.add_argument("name")
    s.add_argument("--email", action="append", metavar="ADDRESS", help="replace the contacts with these (repeatable)")
    s.add_argument("--add-email", action="append", metavar="ADDRESS")
    s.add_argument("--remove-email", action="append", metavar="ADDRESS")
    s.add_argument("--no-email", action="store_true", help="remove every contact address")
    s.add_argument("--webhook", metavar="URL", help='"" removes it')
    s.add_argument("--escalation", metavar="ADDRESS", help='"" removes it')
    s.add_argument("--description")
    s.add_argument("--rename", metavar="NEW_NAME")
    s.add_argument("--reason", help="why (kept in the audit trail)")
    handles(s, cmd_owners_update)

    s = owners.add_parser("remove", help="remove an owner no rule or assignment names")
    s.add_argument("name")
    s.add_argument("--reason", help="why (kept in the audit trail)")
    handles(s, cmd_owners_remove)

    rules = add_group(owners, "rules", "assignment rules, applied by priority", dest="rules_action")
    s = rules.add_parser("list", help="rules in the order they apply")
    add_format(s, "table", "json")
    handles(s, cmd_rules_list)
    s = rules.add_parser("add", help="add a rule: conditions (all must hold) -> attributes")
    s.add_argument("--name", required=True)
    s.add_argument("--owner", help="the owner it assigns")
    s.add_argument("--environment", help="e.g. prod, test")
    s.add_argument("--criticality", choices=CRITICALITIES)
    s.add_argument("--service")
    s.add_argument("--host", metavar="GLOB", help="hostname glob, e.g. '*.prod.example.com' or 'web-*'")
    s.add_argument("--path", metavar="GLOB", help="path glob, ** for any depth, e.g. '/etc/nginx/**/*.pem'")
    s.add_argument("--san", metavar="GLOB", help="DNS SAN glob, e.g. '*.shop.example.com'")
    s.add_argument("--issuer", metavar="TEXT", help="the issuer DN contains TEXT (case-insensitive)")
    s.add_argument("--label", action="append", metavar="K=V", help="the location's label K equals V (repeatable)")
    s.add_argument("--priority", type=int, help="lower applies first (default: after the last rule)")
    s.add_argument("--description")
    s.add_argument("--reason", help="why (kept in the audit trail)")
    handles(s, cmd_rules_add)
    s = rules.add_parser("remove", help="remove a rule")
    s.add_argument("name")
    s.add_argument("--reason", help="why (kept in the audit trail)")
    handles(s, cmd_rules_remove)
    s = rules.add_parser("reorder", help="put these rules first, in this order")
    s.add_argument("names", nargs="+", metavar="NAME")
    s.add_argument("--reason", help="why (kept in the audit trail)")
    handles(s, cmd_rules_reorder)

    s = owners.add_parser("orphans", help="certificates without an owner, or whose owner cannot be reached")
    add_format(s, "table", "json", "csv")
    handles(s, cmd_orphans)
    s = owners.add_parser("explain", help="a certificate's owner, environment, criticality and service per location")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix")
    add_format(s, "table", "json")
    handles(s, cmd_explain)
    s = owners.add_parser("assignments", help="list the explicit assignments")
    add_format(s, "table", "json")
    handles(s, cmd_assignments)

    s = subparsers.add_parser("assign", help="assign a certificate (or its location) to an owner by hand")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix")
    s.add_argument("--owner")
    s.add_argument("--environment")
    s.add_argument("--criticality", choices=CRITICALITIES + ("",))
    s.add_argument("--service")
    _location_args(s)
    handles(s, cmd_assign)

    s = subparsers.add_parser("unassign", help="remove an explicit assignment (rules apply again)")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix")
    _location_args(s)
    handles(s, cmd_unassign)
