"""``certfleet``: the admin CLI, a client of the collector's admin API over mutual TLS."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from typing import Any, Callable

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector import __version__
from collector.cli import audit as cli_audit
from collector.cli import netscan as cli_discovery
from collector.cli import notify as cli_notify
from collector.cli import owners as cli_owners
from collector.cli import policy as cli_policy
from collector.cli import reports as cli_reports
from collector.cli import format as cliformat
from collector.config.client import ClientConfig, load_client_config
from collector.config.core import parse_duration
from collector.errors import CollectorError

TIMEOUT = 60.0


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def open_stub(cfg: ClientConfig) -> tuple[grpc.Channel, admin_pb2_grpc.AdminServiceStub]:
    try:
        creds = grpc.ssl_channel_credentials(
            root_certificates=cfg.ca.read_bytes(),
            private_key=cfg.key.read_bytes(),
            certificate_chain=cfg.certificate.read_bytes(),
        )
    except OSError as e:
        raise CollectorError(f"cannot read the admin identity ({e.filename}): {e.strerror}") from None
    options = [("grpc.max_receive_message_length", 32 * 1024 * 1024)]
    if cfg.server_name:
        options.append(("grpc.ssl_target_name_override", cfg.server_name))
    channel = grpc.secure_channel(cfg.collector, creds, options=options)
    return channel, admin_pb2_grpc.AdminServiceStub(channel)


def width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


def _days(value: str) -> int:
    v = value.strip()
    return int(parse_duration(v if v[-1:] in "smhd" else v + "d", "--expiring-within"))


def cmd_token_create(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    ttl = int(parse_duration(ns.ttl, "--ttl"))
    r = stub.CreateEnrollmentToken(admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=ttl, note=ns.note or ""), timeout=TIMEOUT)
    expires = cliformat.iso(cliformat.ts(r.expires_at))
    if ns.format == "json":
        print(cliformat.dumps({
            "token": r.token, "expires_at": expires, "ca_fingerprint_sha256": r.ca_fingerprint_sha256,
            "enrollment_endpoint": r.enrollment_endpoint,
        }))
        return 0
    print(r.token)
    print(f"# single use, expires {expires}. On the host:", file=sys.stderr)
    print(
        f"#   certfleet-agent enroll --config AGENT.toml --collector {r.enrollment_endpoint} "
        f"--token {r.token} --ca-fingerprint {r.ca_fingerprint_sha256}",
        file=sys.stderr,
    )
    return 0


def cmd_certs_list(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    req = admin_pb2.ListCertificatesRequest(
        expiring_within_seconds=_days(ns.expiring_within) if ns.expiring_within else 0,
        host=ns.host or "",
        issuer_contains=ns.issuer or "",
        include_removed=ns.include_removed,
    )
    now = utcnow()
    certs = (c for page in stub.ListCertificates(req, timeout=TIMEOUT) for c in page.certificates)
    if ns.format == "json":
        out = sys.stdout
        out.write("[")
        for i, c in enumerate(certs):
            out.write(("," if i else "") + "\n" + json.dumps(cliformat.cert_dict(c, now), indent=2))
        out.write("\n]\n")
    elif ns.format == "csv":
        cliformat.certs_csv(certs, now, sys.stdout)
    else:
        sys.stdout.write(cliformat.certs_table(certs, now, width()))
    return 0


def cmd_certs_show(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    c = stub.GetCertificate(admin_pb2.GetCertificateRequest(fingerprint_prefix=ns.fingerprint), timeout=TIMEOUT)
    now = utcnow()
    if ns.pem:
        import base64
        import textwrap

        b64 = base64.b64encode(c.der).decode()
        print("-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(b64, 64)) + "\n-----END CERTIFICATE-----")
    elif ns.format == "json":
        print(cliformat.dumps(cliformat.cert_dict(c, now)))
    else:
        sys.stdout.write(cliformat.cert_detail(c, now))
    return 0


def cmd_agents_list(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    agents = (a for page in stub.ListAgents(admin_pb2.ListAgentsRequest(), timeout=TIMEOUT) for a in page.agents)
    now = utcnow()
    if ns.format == "json":
        print(cliformat.dumps([cliformat.agent_dict(a) for a in agents]))
    else:
        sys.stdout.write(cliformat.agents_table(agents, now, width()))
    return 0


def cmd_agents_resync(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    if not ns.agent and not ns.all:
        raise CollectorError("name an agent or pass --all")
    r = stub.RequestResync(admin_pb2.RequestResyncRequest(agent_id="" if ns.all else ns.agent), timeout=TIMEOUT)
    print(f"full resync requested for {r.agents_flagged} agent(s); each sends a full report on its next sync")
    return 0


def cmd_agents_revoke(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    stub.RevokeAgent(admin_pb2.RevokeAgentRequest(agent_id=ns.agent, reason=ns.reason), timeout=TIMEOUT)
    print(f"agent {ns.agent} revoked: its certificate is refused from now on")
    return 0


FINAL_STATES = {"verified", "failed", "rolled_back", "cancelled"}


def _job_line(j: admin_pb2.JobInfo) -> str:
    where = f"{j.hostname}:{j.path}" + (f" [{j.alias}]" if j.alias else "")
    return f"{j.job_id[:8]}  {j.state:<12} {where}"


def follow_jobs(stub: admin_pb2_grpc.AdminServiceStub, job_ids: list[str], timeout: float, out=sys.stdout) -> int:  # noqa: ANN001
    """Print each job's state changes until all are final; 0 only if all verified."""
    import time

    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    final: dict[str, admin_pb2.JobInfo] = {}
    while len(final) < len(job_ids):
        for jid in job_ids:
            if jid in final:
                continue
            j = stub.GetJob(admin_pb2.GetJobRequest(job_id=jid), timeout=TIMEOUT)
            for ev in j.events[seen.get(jid, 0):]:
                at = cliformat.ts(ev.at)
                out.write(f"  {at.strftime('%H:%M:%S')}  {jid[:8]}  {ev.to_state:<12} {ev.reason}\n")
            out.flush()
            seen[jid] = len(j.events)
            if j.state in FINAL_STATES or j.state == "stuck":
                final[jid] = j
        if len(final) < len(job_ids):
            if time.monotonic() > deadline:
                out.write(f"gave up waiting after {timeout:.0f}s; the jobs go on: certfleet jobs show ID\n")
                return 1
            time.sleep(0.3)
    ok = all(j.state == "verified" for j in final.values())
    for j in final.values():
        line = f"{j.job_id[:8]}: {j.state}"
        if j.state == "verified":
            line += f", now serving {j.served_fingerprint[:16] or j.new_fingerprint[:16]}"
        elif j.reason:
            line += f": {j.reason}"
        out.write(line + "\n")
    return 0 if ok else 1


def cmd_renew(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    r = stub.Renew(admin_pb2.RenewRequest(
        fingerprint_prefix=ns.fingerprint, path=ns.path or "", alias=ns.alias or "", agent_id=ns.agent or "",
        template=ns.template or "", reason=ns.reason or "",
    ), timeout=TIMEOUT)
    for j in r.jobs:
        print(f"job {j.job_id} ({j.state}) for {j.hostname}:{j.path}" + (f" [{j.alias}]" if j.alias else ""))
        if j.HasField("suggested_reload"):   # the reload the agent found for this service
            h = j.suggested_reload
            who = f"{h.process or 'a process'} pid {h.pid}" + (f", {h.service}" if h.service else "")
            print(f"  suggested reload: {h.action} ({who} uses this location)")
    if not ns.wait:
        return 0
    return follow_jobs(stub, [j.job_id for j in r.jobs], ns.timeout)


def cmd_jobs_list(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    r = stub.ListJobs(admin_pb2.ListJobsRequest(state=ns.state or "", limit=ns.limit), timeout=TIMEOUT)
    now = utcnow()
    if ns.format == "json":
        print(cliformat.dumps([cliformat.job_dict(j) for j in r.jobs]))
    else:
        sys.stdout.write(cliformat.jobs_table(r.jobs, now, width()))
    return 0


def cmd_jobs_show(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    j = stub.GetJob(admin_pb2.GetJobRequest(job_id=ns.job), timeout=TIMEOUT)
    if ns.format == "json":
        print(cliformat.dumps(cliformat.job_dict(j)))
    else:
        sys.stdout.write(cliformat.job_detail(j))
    return 0


def cmd_jobs_retry(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    j = stub.RetryJob(admin_pb2.GetJobRequest(job_id=ns.job), timeout=TIMEOUT)
    print(f"job {j.job_id} is {j.state} again (attempt {j.attempts + 1})")
    return follow_jobs(stub, [j.job_id], ns.timeout) if ns.wait else 0


def cmd_jobs_cancel(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    j = stub.CancelJob(admin_pb2.GetJobRequest(job_id=ns.job, reason=ns.reason or ""), timeout=TIMEOUT)
    print(f"job {j.job_id} {j.state}")
    return 0


def cmd_revoke(stub: admin_pb2_grpc.AdminServiceStub, ns: argparse.Namespace) -> int:
    r = stub.RevokeCertificate(admin_pb2.RevokeCertificateRequest(fingerprint_prefix=ns.fingerprint, reason=ns.reason),
                               timeout=TIMEOUT)
    print(f"revoked {r.fingerprint_sha256} through issuer {r.issuer} ({ns.reason})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="certfleet", description="certfleet admin CLI")
    p.add_argument("--version", action="version", version=f"certfleet {__version__}")
    p.add_argument("--config", help="client config (default: $CERTFLEET_CONFIG)")
    sub = p.add_subparsers(dest="group", required=True)

    tok = sub.add_parser("token", help="enrollment tokens").add_subparsers(dest="action", required=True)
    s = tok.add_parser("create", help="print a single-use enrollment token")
    s.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 2d (default 1h)")
    s.add_argument("--note", help="why the token exists (stored with it)")
    s.add_argument("--format", choices=["text", "json"], default="text")
    s.set_defaults(func=cmd_token_create)

    certs = sub.add_parser("certs", help="certificates in the registry").add_subparsers(dest="action", required=True)
    s = certs.add_parser("list", help="list certificates")
    s.add_argument("--expiring-within", metavar="AGE", help="e.g. 30d, 12h (plain numbers are days)")
    s.add_argument("--host", help="only certificates on this host")
    s.add_argument("--issuer", metavar="TEXT", help="issuer DN contains TEXT (case-insensitive)")
    s.add_argument("--include-removed", action="store_true", help="also certificates seen only at removed locations")
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")
    s.set_defaults(func=cmd_certs_list)
    s = certs.add_parser("show", help="one certificate in full")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix of it")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.add_argument("--pem", action="store_true", help="print the certificate as PEM")
    s.set_defaults(func=cmd_certs_show)

    agents = sub.add_parser("agents", help="enrolled agents").add_subparsers(dest="action", required=True)
    s = agents.add_parser("list", help="list agents with their scan errors")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_agents_list)
    s = agents.add_parser("resync", help="ask agents for a full report on their next sync")
    s.add_argument("agent", nargs="?", help="agent id")
    s.add_argument("--all", action="store_true", help="every agent")
    s.set_defaults(func=cmd_agents_resync)
    s = agents.add_parser("revoke", help="refuse an agent's identity from now on")
    s.add_argument("agent", help="agent id")
    s.add_argument("--reason", default="", help="why (kept in the registry)")
    s.set_defaults(func=cmd_agents_revoke)

    s = sub.add_parser("renew", help="renew a certificate at every location that holds it (or one)")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix")
    s.add_argument("--location", dest="path", metavar="PATH", help="only the location with this path")
    s.add_argument("--alias", help="with --location: the keystore alias")
    s.add_argument("--agent", help="only locations on this agent")
    s.add_argument("--template", help="issuance template (default: the collector's default)")
    s.add_argument("--reason", help="why (kept with the job)")
    s.add_argument("--wait", action="store_true", help="follow the job(s) to the end; exit 0 only if verified")
    s.add_argument("--timeout", type=float, default=600, help="seconds to wait with --wait (default 600)")
    s.set_defaults(func=cmd_renew)

    jobs = sub.add_parser("jobs", help="renewal jobs").add_subparsers(dest="action", required=True)
    s = jobs.add_parser("list", help="recent jobs, newest first")
    s.add_argument("--state", help="only jobs in this state")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_jobs_list)
    s = jobs.add_parser("show", help="one job with its history")
    s.add_argument("job", help="job id or a unique prefix")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_jobs_show)
    s = jobs.add_parser("retry", help="start a stuck job again")
    s.add_argument("job")
    s.add_argument("--wait", action="store_true")
    s.add_argument("--timeout", type=float, default=600)
    s.set_defaults(func=cmd_jobs_retry)
    s = jobs.add_parser("cancel", help="cancel a job that has not finished")
    s.add_argument("job")
    s.add_argument("--reason")
    s.set_defaults(func=cmd_jobs_cancel)

    s = sub.add_parser("revoke", help="revoke a certificate at its issuer")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix")
    s.add_argument("--reason", required=True, help="RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, ...")
    s.set_defaults(func=cmd_revoke)

    cli_audit.register(sub)
    cli_owners.register(sub)
    cli_policy.register(sub)
    cli_notify.register(sub)
    cli_reports.register(sub)
    cli_discovery.register(sub)
    return p


def _rpc_error(e: grpc.RpcError, cfg: ClientConfig) -> str:
    code = e.code()
    details = e.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the collector at {cfg.collector}: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the collector at {cfg.collector} did not answer in time"
    return f"{code.name.lower().replace('_', ' ')}: {details}"


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    func: Callable[[Any, argparse.Namespace], int] = ns.func
    try:
        cfg = load_client_config(ns.config)
        channel, stub = open_stub(cfg)
        with channel:
            if getattr(ns, "needs_channel", False):
                return func(channel, ns)
            return func(stub, ns)
    except CollectorError as e:
        print(f"certfleet: {e}", file=sys.stderr)
        return 2
    except grpc.RpcError as e:
        print(f"certfleet: {_rpc_error(e, cfg)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
