"""``certfleet agents list|resync|revoke``: the enrolled agents, their scan errors and their identity.

    certfleet agents list [--format table|json]
    certfleet agents resync (AGENT | --all)
    certfleet agents revoke AGENT [--reason TEXT]
    certfleet agents label AGENT KEY=VALUE... [--remove KEY]...   (collector-side labels: they decide rights)
    certfleet agents rename AGENT NEW-NAME [--reason TEXT]        (the recorded name; audited)

HOST is the name recorded at enrollment; a different name the agent reports later is shown as drift.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any, Iterable

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.cli.command import TIMEOUT, add_format, add_group, handles, terminal_width, utcnow
from collector.cli.format import ago, dumps, fit, iso, render_table, ts
from collector.errors import CollectorError


def agent_dict(a: admin_pb2.AgentInfo) -> dict[str, Any]:
    return {
        "agent_id": a.agent_id,
        "hostname": a.hostname,
        "os": a.os,
        "os_version": a.os_version,
        "agent_version": a.agent_version,
        "addresses": list(a.addresses),
        "status": a.status,
        "first_seen": iso(ts(a.first_seen, a.HasField("first_seen"))),
        "last_seen": iso(ts(a.last_seen, a.HasField("last_seen"))),
        "identity_not_after": iso(ts(a.identity_not_after, a.HasField("identity_not_after"))),
        "last_sequence": a.last_sequence,
        "locations": a.location_count,
        "labels": dict(a.labels),
        "reported_hostname": a.reported_hostname,
        "drift": a.reported_hostname if a.reported_hostname and a.reported_hostname != a.hostname else "",
        "admin_labels": dict(a.admin_labels),
        "errors": [
            {"store_type": e.store_type, "path": e.path, "alias": e.alias, "reason": e.reason, "message": e.message}
            for e in a.errors
        ],
    }


def agents_table(agents: Iterable[admin_pb2.AgentInfo], now: dt.datetime, width: int) -> str:
    rows, problems = [], []
    for a in agents:
        last = ts(a.last_seen, a.HasField("last_seen"))
        seen = ago(now - last) if last else "never"
        drift = a.reported_hostname and a.reported_hostname.lower() != a.hostname.lower()
        rows.append([a.hostname + (f" (reports {a.reported_hostname}: drift)" if drift else ""), a.agent_id[:8], a.status, f"{a.os} {a.os_version}".strip(), a.agent_version,
                     seen, str(a.location_count), str(len(a.errors))])
        for e in a.errors:
            problems.append(f"  {a.hostname}: {e.path}{' [' + e.alias + ']' if e.alias else ''}: {e.reason}: {e.message}")
    if not rows:
        return "no agents enrolled yet (certfleet token create, then certfleet-agent enroll on the host)\n"
    out = render_table(["HOST", "AGENT", "STATUS", "OS", "VERSION", "LAST SEEN", "LOCATIONS", "ERRORS"], rows, width, flex=3)
    if problems:
        out += "\nScan errors:\n" + "\n".join(fit(p, max(width, 40)) for p in problems) + "\n"
    return out


def cmd_agents_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    pages = admin_pb2_grpc.AdminServiceStub(channel).ListAgents(admin_pb2.ListAgentsRequest(), timeout=TIMEOUT)
    agents = (a for page in pages for a in page.agents)
    now = utcnow()
    if ns.format == "json":
        print(dumps([agent_dict(a) for a in agents]))
    else:
        sys.stdout.write(agents_table(agents, now, terminal_width()))
    return 0


def cmd_agents_resync(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    if not ns.agent and not ns.all:
        raise CollectorError("name an agent or pass --all")
    r = admin_pb2_grpc.AdminServiceStub(channel).RequestResync(
        admin_pb2.RequestResyncRequest(agent_id="" if ns.all else ns.agent), timeout=TIMEOUT)
    print(f"full resync requested for {r.agents_flagged} agent(s); each sends a full report on its next sync")
    return 0


def cmd_agents_revoke(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    admin_pb2_grpc.AdminServiceStub(channel).RevokeAgent(
        admin_pb2.RevokeAgentRequest(agent_id=ns.agent, reason=ns.reason), timeout=TIMEOUT)
    print(f"agent {ns.agent} revoked: its certificate is refused from now on")
    return 0


def cmd_agents_label(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    pairs = {}
    for item in ns.labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CollectorError(f"a label is KEY=VALUE, not {item!r}")
        pairs[key] = value
    a = admin_pb2_grpc.AdminServiceStub(channel).LabelAgent(
        admin_pb2.LabelAgentRequest(agent_id=ns.agent, set=pairs, remove=ns.remove or []), timeout=TIMEOUT)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(a.admin_labels.items())) or "none"
    print(f"agent {a.hostname} ({a.agent_id[:8]}): collector-side labels {shown}")
    return 0


def cmd_agents_rename(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    a = admin_pb2_grpc.AdminServiceStub(channel).RenameAgent(
        admin_pb2.RenameAgentRequest(agent_id=ns.agent, hostname=ns.name, reason=ns.reason), timeout=TIMEOUT)
    print(f"agent {a.agent_id} is recorded as {a.hostname}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``agents list|resync|revoke|label|rename`` to the ``certfleet`` parser's subcommands."""
    agents = add_group(subparsers, "agents", "enrolled agents")
    s = agents.add_parser("list", help="list agents with their scan errors")
    add_format(s, "table", "json")
    handles(s, cmd_agents_list)
    s = agents.add_parser("resync", help="ask agents for a full report on their next sync")
    s.add_argument("agent", nargs="?", help="agent id")
    s.add_argument("--all", action="store_true", help="every agent")
    handles(s, cmd_agents_resync)
    s = agents.add_parser("revoke", help="refuse an agent's identity from now on")
    s.add_argument("agent", help="agent id")
    s.add_argument("--reason", default="", help="why (kept in the registry)")
    handles(s, cmd_agents_revoke)
    s = agents.add_parser("label", help="set collector-side labels (they decide rights; the agent's do not)")
    s.add_argument("agent", help="agent id or recorded host name")
    s.add_argument("labels", nargs="*", help="KEY=VALUE")
    s.add_argument("--remove", action="append", help="a label key to remove")
    handles(s, cmd_agents_label)
    s = agents.add_parser("rename", help="change the recorded host name (audited)")
    s.add_argument("agent", help="agent id or recorded host name")
    s.add_argument("name", help="the new recorded name")
    s.add_argument("--reason", default="")
    handles(s, cmd_agents_rename)
