"""``certfleet netscan ...`` and ``certfleet stale``: network scan jobs and services that serve a stale certificate.

    certfleet netscan start --agent ID --targets 10.0.0.0/28[,10.0.1.5] --ports 443,8443 [--rate 50]
                            [--timeout 3] [--concurrency 64] [--starttls 25=smtp] [--sni NAME] [--reason TEXT] [--wait]
    certfleet netscan list [--agent ID] [--limit N] [--format table|json]
    certfleet netscan show SCAN_ID [--format text|json]
    certfleet stale [--agent ID] [--format table|json|csv]
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
import time
from typing import Any, Iterable

import grpc

from certfleet.v1 import discovery_pb2, discovery_pb2_grpc
from collector.cli.command import TIMEOUT, add_format, add_group, handles, terminal_width
from collector.reports.text import SafeCsv
from collector.cli.format import dumps, iso, render_table, short_dn, ts
from collector.config.core import parse_duration
from collector.domain.netscan import DONE, FINAL
from collector.errors import CollectorError


def _when(value: Any, present: bool) -> str | None:
    return iso(ts(value, present))


def endpoint_dict(e: discovery_pb2.ScanEndpoint) -> dict[str, Any]:
    return {"endpoint": e.endpoint, "sni": e.sni, "starttls": e.starttls, "protocol": e.protocol,
            "fingerprint_sha256": e.fingerprint_sha256, "subject": e.subject,
            "not_after": _when(e.not_after, e.HasField("not_after")), "chain_valid": e.chain_valid, "source": e.source}


def scan_dict(s: discovery_pb2.NetworkScanInfo, endpoints: bool = False) -> dict[str, Any]:
    """A scan as JSON; ``endpoints``: with the endpoints it found (GetNetworkScan has them, lists do not)."""
    d = {
        "scan_id": s.scan_id, "agent": s.agent_id, "host": s.hostname, "state": s.state, "reason": s.reason,
        "targets": list(s.targets), "ports": list(s.ports), "rate_per_second": s.rate_per_second,
        "timeout_seconds": s.timeout_seconds, "concurrency": s.concurrency,
        "starttls": {str(p): v for p, v in sorted(s.starttls.items())}, "sni_names": list(s.sni_names),
        "targets_total": s.targets_total, "probed": s.probed, "tls_found": s.tls_found, "errors": s.errors,
        "endpoints_in_registry": s.endpoints_in_registry, "requested_by": s.requested_by,
        "created_at": _when(s.created_at, s.HasField("created_at")),
        "updated_at": _when(s.updated_at, s.HasField("updated_at")),
        "finished_at": _when(s.finished_at, s.HasField("finished_at")),
    }
    if endpoints:
        d["endpoints"] = [endpoint_dict(e) for e in s.endpoints]
    return d


def _percent(s: discovery_pb2.NetworkScanInfo) -> str:
    return f"{100 * s.probed / s.targets_total:.0f}%" if s.targets_total else "-"


def scan_detail(s: discovery_pb2.NetworkScanInfo) -> str:
    d = scan_dict(s)
    tls = ", ".join(f"{p}={v}" for p, v in d["starttls"].items()) or "-"
    lines = [
        f"Scan:         {d['scan_id']}",
        f"State:        {d['state']}" + (f" - {d['reason']}" if d["reason"] else ""),
        f"Agent:        {d['host']} ({d['agent']})",
        f"Targets:      {', '.join(d['targets'])}",
        f"Ports:        {', '.join(map(str, d['ports']))}   STARTTLS: {tls}",
        f"SNI names:    {', '.join(d['sni_names']) or '- (none)'}",
        f"Limits:       {d['rate_per_second']:g} connections/s, {d['timeout_seconds']:g}s per handshake, "
        f"{d['concurrency']} in flight",
        f"Progress:     {d['probed']}/{d['targets_total']} probed ({_percent(s)}), {d['tls_found']} TLS, "
        f"{d['errors']} errors",
        f"In registry:  {d['endpoints_in_registry']} TLS endpoint(s) this scan found"
        + (" (listed below; certfleet certs show FINGERPRINT for one)" if d["endpoints_in_registry"] else ""),
        f"Requested by: {d['requested_by']} at {d['created_at']}" + (f"; finished {d['finished_at']}" if d["finished_at"] else
                                                                     f"; last change {d['updated_at']}"),
    ]
    return "\n".join(lines) + "\n"


def _seconds(value: str) -> float:
    v = value.strip()
    try:
        return float(v[:-1] if v.endswith("s") and not v.endswith("ms") else v)
    except ValueError:
        return parse_duration(v, "--timeout")


def _targets(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def _ports(values: list[str]) -> list[int]:
    out: list[int] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("-")
            try:
                a, b = int(lo), int(hi or lo)
            except ValueError:
                raise CollectorError(f"--ports: {part!r} is not a port or a range of ports (443, 8000-8010)") from None
            if b < a or b - a > 65535:
                raise CollectorError(f"--ports: {part!r} is not a range of ports")
            out.extend(range(a, b + 1))
    return out


def _starttls(values: list[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for v in values:
        for part in v.split(","):
            port, sep, proto = part.strip().partition("=")
            if not sep or not port.strip().isdigit() or not proto.strip():
                raise CollectorError(f"--starttls: {part!r} is not PORT=PROTOCOL (25=smtp, 143=imap, 110=pop3)")
            out[int(port)] = proto.strip().lower()
    return out


def follow(stub: discovery_pb2_grpc.DiscoveryServiceStub, scan_id: str, timeout: float, out=sys.stdout,  # noqa: ANN001
           final: Any = None) -> int:
    """Print progress until the scan is final; 0 only if done. ``final`` (optional) is called with the
    last NetworkScanInfo (final, or the last seen when the wait gave up).

    The agent reports the endpoints a scan found with its next inventory report, which it sends right
    after the scan ends: once the scan is done, the wait goes on (a few seconds at most) until the
    registry holds as many endpoints as the scan found TLS."""
    deadline = time.monotonic() + timeout
    last = None
    finished_at: float | None = None
    while True:
        s = stub.GetNetworkScan(discovery_pb2.GetNetworkScanRequest(scan_id=scan_id), timeout=TIMEOUT)
        now = (s.state, s.probed, s.tls_found, s.errors)
        if now != last:
            out.write(f"  {dt.datetime.now(dt.timezone.utc):%H:%M:%S}  {s.state:<8} {s.probed}/{s.targets_total} "
                      f"probed, {s.tls_found} TLS, {s.errors} errors\n")
            out.flush()
            last = now
        if s.state in FINAL:
            finished_at = finished_at if finished_at is not None else time.monotonic()
            waiting_report = (s.state == DONE and s.endpoints_in_registry < s.tls_found
                              and time.monotonic() - finished_at < REPORT_WAIT and time.monotonic() < deadline)
            if not waiting_report:
                out.write(f"scan {s.scan_id[:8]}: {s.state}" + (f": {s.reason}" if s.reason else "")
                          + f"; {s.endpoints_in_registry} of {s.tls_found} TLS endpoint(s) found are in the registry\n")
                if final is not None:
                    final(s)
                return 0 if s.state == DONE else 1
        elif time.monotonic() > deadline:
            out.write(f"gave up waiting after {timeout:.0f}s; the scan goes on: certfleet netscan show {s.scan_id}\n")
            if final is not None:
                final(s)
            return 1
        time.sleep(0.5)


#: how long ``--wait`` waits, after the scan is done, for the agent's report of what it found
REPORT_WAIT = 30.0


def cmd_start(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
    s = stub.StartNetworkScan(discovery_pb2.StartNetworkScanRequest(
        agent_id=ns.agent, targets=_targets(ns.targets), ports=_ports(ns.ports), rate_per_second=ns.rate or 0,
        timeout_seconds=_seconds(ns.timeout) if ns.timeout else 0, concurrency=ns.concurrency or 0,
        starttls=_starttls(ns.starttls or []), sni_names=ns.sni or [], reason=ns.reason or ""), timeout=TIMEOUT)
    if ns.format == "json":
        if not ns.wait:
            print(dumps(scan_dict(s)))
            return 0
        # stdout is one JSON document (the scan as it ended, with its endpoints); progress goes to stderr
        return follow(stub, s.scan_id, ns.wait_timeout, out=sys.stderr,
                      final=lambda last: print(dumps(scan_dict(last, endpoints=True))))
    print(f"network scan {s.scan_id} queued for {s.hostname}: {', '.join(s.targets)} x ports "
          f"{', '.join(map(str, s.ports))} = {s.targets_total} probes at {s.rate_per_second:g}/s")
    if not ns.wait:
        print(f"follow it with: certfleet netscan show {s.scan_id}")
        return 0
    return follow(stub, s.scan_id, ns.wait_timeout, final=lambda last: sys.stdout.write(_endpoints(last)))


def cmd_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
    scans = list(stub.ListNetworkScans(discovery_pb2.ListNetworkScansRequest(agent_id=ns.agent or "", limit=ns.limit),
                                       timeout=TIMEOUT))
    if ns.format == "json":
        print(dumps([scan_dict(s) for s in scans]))
        return 0
    if not scans:
        print("no network scans (certfleet netscan start --agent ID --targets ... --ports ...)")
        return 0
    rows = [[s.scan_id[:8], s.state, s.hostname, f"{s.probed}/{s.targets_total}", str(s.tls_found),
             str(s.endpoints_in_registry), (_when(s.created_at, s.HasField("created_at")) or "")[:19],
             ",".join(s.targets) + " :" + ",".join(map(str, s.ports))] for s in scans]
    sys.stdout.write(render_table(["SCAN", "STATE", "HOST", "PROBED", "TLS", "IN REGISTRY", "CREATED",
                                   "TARGETS"], rows, terminal_width(), flex=7))
    return 0


def cmd_show(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    s = discovery_pb2_grpc.DiscoveryServiceStub(channel).GetNetworkScan(
        discovery_pb2.GetNetworkScanRequest(scan_id=ns.scan), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps(scan_dict(s, endpoints=True)))
        return 0
    sys.stdout.write(scan_detail(s))
    sys.stdout.write(_endpoints(s))
    return 0


def _endpoints(s: discovery_pb2.NetworkScanInfo) -> str:
    """The TLS endpoints the scan found, as the registry holds them (whatever source recorded them first)."""
    out = []
    for e in s.endpoints:
        sni = f" sni={e.sni}" if e.sni else ""
        tls = f" starttls={e.starttls}" if e.starttls else ""
        src = f"  (recorded first as {e.source})" if e.source and e.source != "network_scan" else ""
        out.append(f"  {e.endpoint}{sni}{tls}  {e.protocol or '?'}  {short_dn(e.subject) or '(empty subject)'}"
                   f"  {e.fingerprint_sha256[:16]}  {'chain valid' if e.chain_valid else 'chain not valid'}{src}")
    return ("Endpoints:\n" + "\n".join(out) + "\n") if out else ""


def stale_dict(v: discovery_pb2.StaleLocationInfo) -> dict[str, Any]:
    return {
        "agent": v.agent_id, "host": v.hostname, "store_type": v.store_type, "path": v.path, "alias": v.alias,
        "file_fingerprint": v.file_fingerprint, "served_fingerprint": v.served_fingerprint, "endpoint": v.endpoint,
        "process": v.process_name, "pid": v.pid, "since": _when(v.since, v.HasField("since")), "owner": v.owner,
        "service": v.service, "suggested_reload": v.suggested_reload,
    }


STALE_FIELDS = ["host", "path", "alias", "file_fingerprint", "served_fingerprint", "endpoint", "process", "pid",
                "since", "owner", "service", "suggested_reload", "agent", "store_type"]


def stale_table(items: Iterable[dict[str, Any]], width: int) -> str:
    rows = [[d["host"], d["path"] + (f" [{d['alias']}]" if d["alias"] else ""), d["file_fingerprint"][:12],
             d["served_fingerprint"][:12], d["endpoint"] or "-", f"{d['process'] or '?'}/{d['pid']}",
             (d["since"] or "-")[:19], d["owner"] or "-", d["suggested_reload"] or "-"] for d in items]
    if not rows:
        return "no stale services: every process serves the certificate its files hold\n"
    return render_table(["HOST", "PATH", "FILE", "SERVED", "ENDPOINT", "PROCESS", "SINCE", "OWNER",
                         "RELOAD"], rows, width, flex=1) + (
        f"{len(rows)} stale service{'s' if len(rows) != 1 else ''}: the file was replaced, the process still serves "
        "the old certificate (reload it)\n")


def cmd_stale(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    items = (stale_dict(v) for v in discovery_pb2_grpc.DiscoveryServiceStub(channel).ListStale(
        discovery_pb2.ListStaleRequest(agent_id=ns.agent or ""), timeout=TIMEOUT))
    if ns.format == "json":
        print(dumps(list(items)))
    elif ns.format == "csv":
        w = SafeCsv(csv.DictWriter(sys.stdout, fieldnames=STALE_FIELDS, extrasaction="ignore"))
        w.writeheader()
        w.writerows(items)
    else:
        sys.stdout.write(stale_table(list(items), terminal_width()))
    return 0


def register(subparsers: Any) -> None:
    """Add ``netscan start|list|show`` and ``stale`` to the ``certfleet`` parser's subcommands."""
    net = add_group(subparsers, "netscan", "TLS scans of address ranges, run by an agent", dest="netscan_command")
    s = net.add_parser("start", help="give an agent a network scan (admin, operator)")
    s.add_argument("--agent", required=True, help="the agent that runs it (id or unique prefix)")
    s.add_argument("--targets", required=True, action="append",
                   help="addresses, networks or ranges, comma-separated: 10.0.0.5,10.0.0.0/28,10.0.1.1-10.0.1.20")
    s.add_argument("--ports", required=True, action="append", help="ports, comma-separated: 443,8443,8000-8010")
    s.add_argument("--rate", type=float, help="new connections per second (default 50)")
    s.add_argument("--timeout", help="per connection and handshake, e.g. 3 or 3s (default 3s)")
    s.add_argument("--concurrency", type=int, help="handshakes in flight (default 64)")
    s.add_argument("--starttls", action="append", metavar="PORT=PROTO",
                   help="STARTTLS for a port: smtp, imap, pop3 (25, 587, 143, 110 by default)")
    s.add_argument("--sni", action="append", metavar="NAME", help="a server name to send (besides the registry's)")
    s.add_argument("--reason", help="why (audited)")
    s.add_argument("--wait", action="store_true", help="follow the scan to the end; exit 0 only if done")
    s.add_argument("--wait-timeout", type=float, default=600, help="seconds to wait with --wait (default 600)")
    add_format(s, "text", "json")
    handles(s, cmd_start)
    s = net.add_parser("list", help="network scans, newest first")
    s.add_argument("--agent", help="only this agent's")
    s.add_argument("--limit", type=int, default=50)
    add_format(s, "table", "json")
    handles(s, cmd_list)
    s = net.add_parser("show", help="one network scan: progress and the endpoints it left in the registry")
    s.add_argument("scan", help="scan id or a unique prefix")
    add_format(s, "text", "json")
    handles(s, cmd_show)

    s = subparsers.add_parser("stale", help="services that serve another certificate than their file holds")
    s.add_argument("--agent", help="only this agent's")
    add_format(s, "table", "json", "csv")
    handles(s, cmd_stale)
