"""``certfleet approvals list|show|approve|deny``: issuances that wait for a human (issue 11).

    certfleet approvals list [--state pending|approved|denied|expired|all] [--format table|json]
    certfleet approvals show ID [--format text|json]
    certfleet approvals approve ID [--reason TEXT]
    certfleet approvals deny ID --reason TEXT

An approver is an admin or an identity of role ``approver``, and never the requester (four eyes).
ID is the approval's id, a prefix of it (6+), or the job's id.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.cli.command import TIMEOUT, add_format, add_group, handles, terminal_width
from collector.cli.format import dumps, iso, render_table, ts


def approval_dict(a: admin_pb2.ApprovalInfo) -> dict[str, Any]:
    return {
        "approval_id": a.approval_id, "job_id": a.job_id, "state": a.state, "requested_by": a.requested_by,
        "owner": a.owner, "agent_id": a.agent_id, "hostname": a.hostname, "fingerprint": a.fingerprint,
        "names": list(a.names), "reasons": list(a.reasons), "created_at": iso(ts(a.created_at)),
        "expires_at": iso(ts(a.expires_at)), "decided_by": a.decided_by,
        "decided_at": iso(ts(a.decided_at, a.HasField("decided_at"))), "decision_reason": a.decision_reason,
    }


def _show(a: admin_pb2.ApprovalInfo) -> str:
    d = approval_dict(a)
    lines = [f"approval {a.approval_id}: {a.state}", f"  job:          {a.job_id}",
             f"  host:         {a.hostname or a.agent_id} (agent {a.agent_id})",
             f"  names:        {', '.join(a.names)}", f"  owner:        {a.owner or '(no grant holds them)'}",
             f"  requested by: {a.requested_by} at {d['created_at']}", f"  expires:      {d['expires_at']}",
             "  reasons:"] + [f"    - {r}" for r in a.reasons]
    if a.decided_by:
        lines.append(f"  decided:      {a.state} by {a.decided_by} at {d['decided_at']}: {a.decision_reason}")
    return "\n".join(lines) + "\n"


def cmd_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = admin_pb2_grpc.AdminServiceStub(channel).ListApprovals(
        admin_pb2.ListApprovalsRequest(state=ns.state), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps([approval_dict(a) for a in r.approvals]))
        return 0
    if not r.approvals:
        print(f"no {ns.state if ns.state != 'all' else ''} approvals".replace("  ", " "))
        return 0
    sys.stdout.write(render_table(["ID", "STATE", "HOST", "NAMES", "REQUESTED BY", "EXPIRES", "WHY"], [
        [a.approval_id[:8], a.state, a.hostname or a.agent_id[:8], ", ".join(a.names), a.requested_by,
         (iso(ts(a.expires_at)) or "")[:16], (a.reasons[0] if a.reasons else "")] for a in r.approvals],
        terminal_width(), flex=6))
    return 0


def cmd_show(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    a = admin_pb2_grpc.AdminServiceStub(channel).GetApproval(
        admin_pb2.GetApprovalRequest(approval_id=ns.id), timeout=TIMEOUT)
    print(dumps(approval_dict(a))) if ns.format == "json" else sys.stdout.write(_show(a))
    return 0


def _decide(channel: grpc.Channel, ns: argparse.Namespace, approve: bool) -> int:
    a = admin_pb2_grpc.AdminServiceStub(channel).DecideApproval(
        admin_pb2.DecideApprovalRequest(approval_id=ns.id, approve=approve, reason=ns.reason or ""), timeout=TIMEOUT)
    if a.state == "expired":
        print(f"approval {a.approval_id[:8]} expired, nothing to decide: {a.decision_reason} (job {a.job_id})")
        return 1
    print(f"approval {a.approval_id[:8]} {a.state}: job {a.job_id} "
          + ("goes ahead" if approve else "ended denied"))
    return 0


def cmd_approve(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    return _decide(channel, ns, True)


def cmd_deny(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    return _decide(channel, ns, False)


def register(subparsers: Any) -> None:
    """Add ``approvals list|show|approve|deny``."""
    g = add_group(subparsers, "approvals", "issuances waiting for an approver")
    s = g.add_parser("list", help="approvals (pending by default)")
    s.add_argument("--state", default="pending", choices=["pending", "approved", "denied", "expired", "all"])
    add_format(s, "table", "json")
    handles(s, cmd_list)
    s = g.add_parser("show", help="one approval with its reasons")
    s.add_argument("id")
    add_format(s, "text", "json")
    handles(s, cmd_show)
    s = g.add_parser("approve", help="let the issuance go ahead (never your own request)")
    s.add_argument("id")
    s.add_argument("--reason", default="")
    handles(s, cmd_approve)
    s = g.add_parser("deny", help="refuse the issuance: the job ends denied")
    s.add_argument("id")
    s.add_argument("--reason", required=True)
    handles(s, cmd_deny)
