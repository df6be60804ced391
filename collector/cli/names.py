"""``certfleet names ...``: who may hold which name (issue 11).

    certfleet names grant --owner TEAM PATTERN [--wins] [--reason TEXT]
    certfleet names allow (--hosts GLOB | --agent ID|HOST | --label KEY=VALUE) --pattern PATTERN [--reason TEXT]
    certfleet names list [--owner TEAM] [--format table|json]
    certfleet names revoke (grant|allow) ID [--reason TEXT]
    certfleet names check HOST NAME... [--format text|json]
    certfleet names propose [--format table|json]
    certfleet names adopt (--proposal ID ... | --all-matching [--owner TEAM] [--name GLOB]) [--wins]

A PATTERN is a DNS name, a wildcard (``*.shop.example.com``: one label; ``**.shop.example.com``:
any depth) or an address (``10.0.0.5``, ``10.1.0.0/16``). ``check`` exits 1 when not authorized.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.cli.command import TIMEOUT, add_format, add_group, handles, terminal_width
from collector.cli.format import dumps, render_table
from collector.errors import CollectorError


def _stub(channel: grpc.Channel) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(channel)


def rule_dict(r: admin_pb2.NameRule) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": r.kind, "id": r.id, "pattern": r.pattern, "created_by": r.created_by}
    if r.kind == "grant":
        d.update(owner=r.owner, wins=r.wins, source=r.source)
    else:
        d.update(hosts=r.hosts, agent_id=r.agent_id, label=r.label)
    return d


def _who(r: admin_pb2.NameRule) -> str:
    return f"agent {r.agent_id}" if r.agent_id else f"label {r.label}" if r.label else f"hosts {r.hosts}"


def cmd_grant(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = _stub(channel).GrantNames(admin_pb2.GrantNamesRequest(owner=ns.owner, pattern=ns.pattern, wins=ns.wins,
                                                              reason=ns.reason), timeout=TIMEOUT)
    print(f"grant #{r.id}: {r.owner} holds {r.pattern}" + (" (wins over overlapping grants)" if r.wins else ""))
    return 0


def cmd_allow(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = _stub(channel).AllowNames(admin_pb2.AllowNamesRequest(
        pattern=ns.pattern, hosts=ns.hosts or "", agent_id=ns.agent or "", label=ns.label or "", reason=ns.reason),
        timeout=TIMEOUT)
    print(f"allow #{r.id}: {_who(r)} may receive {r.pattern}")
    return 0


def cmd_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = _stub(channel).ListNameRules(admin_pb2.ListNameRulesRequest(owner=ns.owner or ""), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps({"grants": [rule_dict(g) for g in r.grants], "allows": [rule_dict(a) for a in r.allows]}))
        return 0
    width = terminal_width()
    if not r.grants and not r.allows:
        print("no grants yet: nothing is authorized (certfleet names propose shows what the inventory suggests)")
        return 0
    print("Grants (who holds which names):")
    sys.stdout.write(render_table(["ID", "OWNER", "PATTERN", "WINS", "BY"], [
        [str(g.id), g.owner, g.pattern, "yes" if g.wins else "", g.created_by] for g in r.grants], width, flex=2))
    print("\nAllows (which hosts may receive them):")
    sys.stdout.write(render_table(["ID", "PATTERN", "HOSTS", "BY"], [
        [str(a.id), a.pattern, _who(a), a.created_by] for a in r.allows], width, flex=1))
    return 0


def cmd_revoke(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    _stub(channel).RevokeNameRule(admin_pb2.RevokeNameRuleRequest(kind=ns.kind, id=ns.id, reason=ns.reason),
                                  timeout=TIMEOUT)
    print(f"{ns.kind} #{ns.id} revoked")
    return 0


def cmd_check(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = _stub(channel).CheckNames(admin_pb2.CheckNamesRequest(host=ns.host, names=ns.names), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps({"authorized": r.authorized, "agent_id": r.agent_id, "hostname": r.hostname, "verdicts": [
            {"name": v.name, "authorized": v.authorized, "explanation": v.explanation, "grant_id": v.grant_id,
             "allow_id": v.allow_id, "owner": v.owner} for v in r.verdicts]}))
    else:
        print(f"{'AUTHORIZED' if r.authorized else 'NOT AUTHORIZED'}: {', '.join(ns.names)} to "
              f"{r.hostname or r.agent_id} (agent {r.agent_id})")
        for v in r.verdicts:
            print(f"  {'ok ' if v.authorized else 'NO '} {v.explanation}")
    return 0 if r.authorized else 1


def proposal_dict(p: admin_pb2.NameProposal) -> dict[str, Any]:
    return {"proposal_id": p.proposal_id, "name": p.name, "owner": p.owner, "hosts": list(p.hosts),
            "agent_ids": list(p.agent_ids)}


def cmd_propose(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = _stub(channel).ProposeNames(admin_pb2.ProposeNamesRequest(), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps([proposal_dict(p) for p in r.proposals]))
        return 0
    if not r.proposals:
        print("nothing to propose: every name in the inventory is authorized where it is")
        return 0
    sys.stdout.write(render_table(["PROPOSAL", "NAME", "OWNER", "ON HOSTS"], [
        [p.proposal_id, p.name, p.owner or "(none)", ", ".join(p.hosts)] for p in r.proposals], terminal_width(), 3))
    print("\nadopt: certfleet names adopt --proposal ID ... (or --all-matching --owner TEAM)")
    return 0


def cmd_adopt(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    if not ns.proposal and not ns.all_matching:
        raise CollectorError("name proposals with --proposal ID, or pass --all-matching with --owner/--name")
    r = _stub(channel).AdoptNames(admin_pb2.AdoptNamesRequest(
        proposal_ids=ns.proposal or [], all_matching=ns.all_matching, owner=ns.owner or "", name_glob=ns.name or "",
        wins=ns.wins), timeout=TIMEOUT)
    for p in r.adopted:
        print(f"adopted {p.proposal_id}: {p.owner} holds {p.name}; allowed on {', '.join(p.hosts)}")
    for s in r.skipped:
        print(f"skipped: {s}", file=sys.stderr)
    print(f"{len(r.adopted)} adopted, {len(r.skipped)} skipped")
    return 0 if r.adopted or not r.skipped else 1


def register(subparsers: Any) -> None:
    """Add ``names grant|allow|list|revoke|check|propose|adopt``."""
    g = add_group(subparsers, "names", "who may hold which name: grants, allows, adoption")
    s = g.add_parser("grant", help="an owner holds a name pattern")
    s.add_argument("pattern", help="DNS name, *.domain, **.domain, address or range")
    s.add_argument("--owner", required=True, help="the team that holds it")
    s.add_argument("--wins", action="store_true", help="admin: this grant decides where it overlaps other owners'")
    s.add_argument("--reason", default="")
    handles(s, cmd_grant)
    s = g.add_parser("allow", help="which hosts may receive a pattern")
    s.add_argument("--pattern", required=True)
    s.add_argument("--hosts", help="glob on the recorded host name, e.g. 'web-*'")
    s.add_argument("--agent", help="agent id or recorded host name")
    s.add_argument("--label", help="collector-side label KEY=VALUE (certfleet agents label)")
    s.add_argument("--reason", default="")
    handles(s, cmd_allow)
    s = g.add_parser("list", help="grants and allows")
    s.add_argument("--owner", help="only this owner's")
    add_format(s, "table", "json")
    handles(s, cmd_list)
    s = g.add_parser("revoke", help="remove a grant or an allow")
    s.add_argument("kind", choices=["grant", "allow"])
    s.add_argument("id", type=int)
    s.add_argument("--reason", default="")
    handles(s, cmd_revoke)
    s = g.add_parser("check", help="may these names go to this host? which grant decides, or why none")
    s.add_argument("host", help="agent id or recorded host name")
    s.add_argument("names", nargs="+")
    add_format(s, "text", "json")
    handles(s, cmd_check)
    s = g.add_parser("propose", help="grants the inventory suggests (names on hosts today, their owner)")
    add_format(s, "table", "json")
    handles(s, cmd_propose)
    s = g.add_parser("adopt", help="turn proposals into grants and allows (audited)")
    s.add_argument("--proposal", action="append", help="a proposal id (repeat for several)")
    s.add_argument("--all-matching", action="store_true", help="every current proposal matching --owner/--name")
    s.add_argument("--owner", help="with --all-matching: proposals of this owner")
    s.add_argument("--name", help="with --all-matching: names matching this DNS glob")
    s.add_argument("--wins", action="store_true", help="admin: adopted grants win over overlapping ones")
    handles(s, cmd_adopt)
