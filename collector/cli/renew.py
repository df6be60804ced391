"""``certfleet renew``: renew a certificate at every location that holds it (or one), and follow the jobs.

    certfleet renew FINGERPRINT [--location PATH [--alias A]] [--agent ID] [--template T] [--reason TEXT]
                                [--wait [--timeout SECONDS]]

Each job's suggested reload (``JobInfo.suggested_reload``: the process the agent found using the
location) is printed under it. With ``--wait`` the jobs are followed as ``certfleet jobs`` does.
"""
from __future__ import annotations

import argparse
from typing import Any

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.cli.command import TIMEOUT, handles
from collector.cli.jobs import follow_jobs


def reload_line(h: admin_pb2.ReloadSuggestion) -> str:
    """The line under a job that tells which reload the agent suggests for the service using the location."""
    who = f"{h.process or 'a process'} pid {h.pid}" + (f", {h.service}" if h.service else "")
    return f"  suggested reload: {h.action} ({who} uses this location)"


def cmd_renew(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    r = stub.Renew(admin_pb2.RenewRequest(
        fingerprint_prefix=ns.fingerprint, path=ns.path or "", alias=ns.alias or "", agent_id=ns.agent or "",
        template=ns.template or "", reason=ns.reason or "",
    ), timeout=TIMEOUT)
    for j in r.jobs:
        print(f"job {j.job_id} ({j.state}) for {j.hostname}:{j.path}" + (f" [{j.alias}]" if j.alias else ""))
        if j.HasField("suggested_reload"):
            print(reload_line(j.suggested_reload))
        if j.state == "awaiting_approval":
            print(f"  not issued: awaits an approval (certfleet approvals show {j.job_id})")
    waiting = [j for j in r.jobs if j.state == "awaiting_approval"]
    if not ns.wait:
        return 0
    # an approval takes a human: follow the others, and say that not everything went ahead
    going = [j.job_id for j in r.jobs if j.state != "awaiting_approval"]
    code = follow_jobs(stub, going, ns.timeout) if going else 1
    if waiting:
        print(f"{len(waiting)} job(s) await an approval: certfleet approvals list")
        return 1
    return code


def register(subparsers: Any) -> None:
    """Add ``renew`` to the ``certfleet`` parser's subcommands."""
    s = subparsers.add_parser("renew", help="renew a certificate at every location that holds it (or one)")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix")
    s.add_argument("--location", dest="path", metavar="PATH", help="only the location with this path")
    s.add_argument("--alias", help="with --location: the keystore alias")
    s.add_argument("--agent", help="only locations on this agent")
    s.add_argument("--template", help="issuance template (default: the collector's default)")
    s.add_argument("--reason", help="why (kept with the job)")
    s.add_argument("--wait", action="store_true", help="follow the job(s) to the end; exit 0 only if verified")
    s.add_argument("--timeout", type=float, default=600, help="seconds to wait with --wait (default 600)")
    handles(s, cmd_renew)
