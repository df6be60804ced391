"""``certfleet jobs list|show|retry|cancel``: renewal jobs, and following them to their end.

    certfleet jobs list [--state S] [--limit N] [--format table|json]
    certfleet jobs show JOB [--format table|json]
    certfleet jobs retry JOB [--wait] [--timeout SECONDS]
    certfleet jobs cancel JOB [--reason TEXT]

:func:`follow_jobs` also serves ``certfleet renew --wait``. A job is over when its state is final
or ``stuck`` (collector/domain/jobstates.py); only ``verified`` is a success.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any, Iterable, TextIO

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.cli.command import TIMEOUT, add_format, add_group, handles, terminal_width, utcnow
from collector.cli.format import ago, dumps, iso, render_table, ts
from collector.domain.jobstates import STUCK, VERIFIED, VERIFIED_BY_NONE, is_final

POLL_SECONDS = 0.3


def job_dict(j: admin_pb2.JobInfo) -> dict[str, Any]:
    result = json.loads(j.result_detail) if j.result_detail else None
    return {
        "job_id": j.job_id,
        "kind": j.kind,
        "state": j.state,
        "reason": j.reason,
        "agent": j.agent_id,
        "host": j.hostname,
        "store_type": j.store_type,
        "path": j.path,
        "alias": j.alias,
        "chain_index": j.chain_index,
        "template": j.template,
        "old_fingerprint": j.old_fingerprint,
        "new_fingerprint": j.new_fingerprint or None,
        "served_fingerprint": j.served_fingerprint or None,
        "attempts": j.attempts,
        "requested_by": j.requested_by,
        "created_at": iso(ts(j.created_at, j.HasField("created_at"))),
        "updated_at": iso(ts(j.updated_at, j.HasField("updated_at"))),
        "deadline": iso(ts(j.deadline, j.HasField("deadline"))),
        "finished_at": iso(ts(j.finished_at, j.HasField("finished_at"))),
        "result": result,
        "verified_by": (result or {}).get("verified_by") or None,
        "events": [
            {"at": iso(ts(e.at)), "from": e.from_state, "to": e.to_state, "reason": e.reason, "actor": e.actor}
            for e in j.events
        ],
    }


def jobs_table(jobs: Iterable[admin_pb2.JobInfo], now: dt.datetime, width: int) -> str:
    rows = []
    for j in jobs:
        created = ts(j.created_at, j.HasField("created_at"))
        rows.append([
            j.job_id[:8], j.state, ago(now - created) if created else "-",
            f"{j.hostname}:{j.path}" + (f" [{j.alias}]" if j.alias else ""), j.template, j.reason,
        ])
    if not rows:
        return "no jobs\n"
    return render_table(["JOB", "STATE", "CREATED", "WHERE", "TEMPLATE", "REASON"], rows, width, flex=5)


def job_detail(j: admin_pb2.JobInfo) -> str:
    d = job_dict(j)
    lines = [
        f"Job:          {d['job_id']} ({d['kind']})",
        f"State:        {d['state']}" + (f" - {d['reason']}" if d["reason"] else ""),
        f"Where:        {d['host']}:{d['path']}" + (f" alias={d['alias']}" if d["alias"] else "") + f" ({d['store_type']})",
        f"Template:     {d['template']}",
        f"Old cert:     {d['old_fingerprint']}",
        f"New cert:     {d['new_fingerprint'] or '-'}",
        f"Served now:   {d['served_fingerprint'] or '-'}",
        f"Requested by: {d['requested_by']} at {d['created_at']}; deadline {d['deadline']}; attempts {d['attempts']}",
        "History:",
    ]
    for e in d["events"]:
        lines.append(f"  {e['at']}  {e['from'] or '-':>12} -> {e['to']:<12} {e['reason']}  ({e['actor']})")
    if d["result"]:
        lines.append("Install steps:")
        for st in d["result"].get("steps", []):
            lines.append(f"  {'ok ' if st['ok'] else 'FAIL'} {st['step']:<8} {st['seconds']:.2f}s  {st['detail']}")
        if d["verified_by"] == VERIFIED_BY_NONE:
            lines.append("  NOT verified: the store has no verify entry on the agent; no service was probed")
        if d["result"].get("reload_seconds"):
            lines.append(f"  service reload took {d['result']['reload_seconds']:.2f}s")
    return "\n".join(lines) + "\n"


def _nothing_verified(j: admin_pb2.JobInfo) -> bool:
    return job_dict(j)["verified_by"] == VERIFIED_BY_NONE


def follow_jobs(stub: admin_pb2_grpc.AdminServiceStub, job_ids: list[str], timeout: float,
                out: TextIO = sys.stdout) -> int:
    """Print each job's state changes until all are final (or stuck); 0 only if all verified."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    final: dict[str, admin_pb2.JobInfo] = {}
    while len(final) < len(job_ids):
        for jid in job_ids:
            if jid in final:
                continue
            j = stub.GetJob(admin_pb2.GetJobRequest(job_id=jid), timeout=TIMEOUT)
            for ev in j.events[seen.get(jid, 0):]:
                at = ts(ev.at)
                out.write(f"  {at.strftime('%H:%M:%S')}  {jid[:8]}  {ev.to_state:<12} {ev.reason}\n")
            out.flush()
            seen[jid] = len(j.events)
            if is_final(j.state) or j.state == STUCK:
                final[jid] = j
        if len(final) < len(job_ids):
            if time.monotonic() > deadline:
                out.write(f"gave up waiting after {timeout:.0f}s; the jobs go on: certfleet jobs show ID\n")
                return 1
            time.sleep(POLL_SECONDS)
    ok = all(j.state == VERIFIED for j in final.values())
    for j in final.values():
        line = f"{j.job_id[:8]}: {j.state}"
        if j.state == VERIFIED and _nothing_verified(j):
            line += ", installed but NOT verified (no verify entry for this store on the agent)"
        elif j.state == VERIFIED:
            line += f", now serving {j.served_fingerprint[:16] or j.new_fingerprint[:16]}"
        elif j.reason:
            line += f": {j.reason}"
        out.write(line + "\n")
    return 0 if ok else 1


# -- commands ---------------------------------------------------------------------------------


def cmd_jobs_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = admin_pb2_grpc.AdminServiceStub(channel).ListJobs(
        admin_pb2.ListJobsRequest(state=ns.state or "", limit=ns.limit), timeout=TIMEOUT)
    now = utcnow()
    if ns.format == "json":
        print(dumps([job_dict(j) for j in r.jobs]))
    else:
        sys.stdout.write(jobs_table(r.jobs, now, terminal_width()))
    return 0


def cmd_jobs_show(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    j = admin_pb2_grpc.AdminServiceStub(channel).GetJob(admin_pb2.GetJobRequest(job_id=ns.job), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps(job_dict(j)))
    else:
        sys.stdout.write(job_detail(j))
    return 0


def cmd_jobs_retry(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    j = stub.RetryJob(admin_pb2.GetJobRequest(job_id=ns.job), timeout=TIMEOUT)
    print(f"job {j.job_id} is {j.state} again (attempt {j.attempts + 1})")
    return follow_jobs(stub, [j.job_id], ns.timeout) if ns.wait else 0


def cmd_jobs_cancel(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    j = admin_pb2_grpc.AdminServiceStub(channel).CancelJob(
        admin_pb2.GetJobRequest(job_id=ns.job, reason=ns.reason or ""), timeout=TIMEOUT)
    print(f"job {j.job_id} {j.state}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``jobs list|show|retry|cancel`` to the ``certfleet`` parser's subcommands."""
    jobs = add_group(subparsers, "jobs", "renewal jobs")
    s = jobs.add_parser("list", help="recent jobs, newest first")
    s.add_argument("--state", help="only jobs in this state")
    s.add_argument("--limit", type=int, default=50)
    add_format(s, "table", "json")
    handles(s, cmd_jobs_list)
    s = jobs.add_parser("show", help="one job with its history")
    s.add_argument("job", help="job id or a unique prefix")
    add_format(s, "table", "json")
    handles(s, cmd_jobs_show)
    s = jobs.add_parser("retry", help="start a stuck job again")
    s.add_argument("job")
    s.add_argument("--wait", action="store_true")
    s.add_argument("--timeout", type=float, default=600)
    handles(s, cmd_jobs_retry)
    s = jobs.add_parser("cancel", help="cancel a job that has not finished")
    s.add_argument("job")
    s.add_argument("--reason")
    handles(s, cmd_jobs_cancel)
