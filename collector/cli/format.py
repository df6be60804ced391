"""Turning admin API answers into tables, JSON and CSV for people and scripts.

Pure functions of the messages and an injected ``now``.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from typing import Any, Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from certfleet.v1 import admin_pb2
from collector.reports.text import fit, fit_left, short_dn


def ts(value: Timestamp, present: bool = True) -> dt.datetime | None:
    if not present or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime(tzinfo=dt.timezone.utc)


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def days_left(not_after: dt.datetime, now: dt.datetime) -> int:
    """Whole days until expiry, rounded down; negative once expired."""
    return math.floor((not_after - now).total_seconds() / 86400)


def key_desc(c: admin_pb2.CertificateInfo) -> str:
    if c.key_curve:
        return f"{c.key_type} {c.key_curve}"
    return f"{c.key_type} {c.key_size}" if c.key_size else c.key_type


def location_dict(loc: admin_pb2.LocationInfo) -> dict[str, Any]:
    return {
        "agent": loc.agent_id,
        "host": loc.hostname,
        "store_type": loc.store_type,
        "path": loc.path,
        "alias": loc.alias,
        "chain_index": loc.chain_index,
        "entry_type": loc.entry_type,
        "has_private_key": loc.has_private_key,
        "key_encrypted": loc.key_encrypted,
        "key_match": loc.key_match,
        "status": loc.status,
        "first_seen": iso(ts(loc.first_seen, loc.HasField("first_seen"))),
        "last_seen": iso(ts(loc.last_seen, loc.HasField("last_seen"))),
        "removed_at": iso(ts(loc.removed_at, loc.HasField("removed_at"))),
        "file_owner": loc.file_owner,
        "file_group": loc.file_group,
        "file_mode": f"{loc.file_mode:04o}",
        "file_mtime": iso(ts(loc.file_mtime, loc.HasField("file_mtime"))),
        "labels": dict(loc.labels),
        "role": loc.role or "service",
        "stale": ({
            "served_fingerprint": loc.stale.served_fingerprint, "endpoint": loc.stale.endpoint,
            "pid": loc.stale.pid, "process_name": loc.stale.process_name,
            "since": iso(ts(loc.stale.since, loc.stale.HasField("since"))),
        } if loc.HasField("stale") else None),
        "endpoint": _plain(loc.endpoint) if loc.HasField("endpoint") else None,
        "processes": [_plain(p) for p in loc.processes],
        "windows": _plain(loc.windows) if loc.HasField("windows") else None,
        "iis_bindings": [_plain(b) for b in loc.iis_bindings],
    }


def _plain(msg: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def location_facts(loc: dict[str, Any]) -> list[str]:
    """Readable lines about a location's discovery facts (``location_dict`` output): role,
    handshake, processes, stale service, Windows store entry and IIS bindings."""
    out: list[str] = []
    if loc.get("role") == "trust_anchor":
        out.append("trust anchor (an entry of a trust store: not renewed, not judged as a service certificate)")
    ep = loc.get("endpoint")
    if ep:
        how = ep.get("starttls") and f"STARTTLS {ep['starttls']}" or "TLS"
        sni = f" SNI {ep['sni']}" if ep.get("sni") else " no SNI"
        valid = "chain valid" if ep.get("chain_valid") else f"chain NOT valid ({ep.get('validation_error') or 'unknown'})"
        src = ep.get("source") or "?"
        if ep.get("scan_id"):
            src += f" {ep['scan_id'][:8]}"
        out.append(f"endpoint {ep.get('host')}:{ep.get('port')} {how}{sni}: {ep.get('protocol') or '?'} "
                   f"{ep.get('cipher') or '?'}, {valid}; found by {src}, handshake {float(ep.get('handshake_seconds') or 0):.3f}s")
        if ep.get("chain_fingerprints"):
            out.append("  chain sent: " + ", ".join(f[:12] for f in ep["chain_fingerprints"]))
    for p in loc.get("processes") or ():
        svc = f" ({p['service']})" if p.get("service") else ""
        listen = f" listening on {', '.join(p['listen'])}" if p.get("listen") else ""
        why = p.get("evidence") or "?"
        if p.get("config_path"):
            why += f" {p['config_path']}"
        reload = f"; reload: {p['suggested_reload']}" if p.get("suggested_reload") else ""
        out.append(f"used by {p.get('name') or '?'} pid {p.get('pid')}{svc} as {p.get('user') or '?'}{listen} "
                   f"[{why}]{reload}")
    st = loc.get("stale")
    if st:
        who = f" by {st['process_name']} pid {st['pid']}" if st.get("process_name") else ""
        out.append(f"STALE since {st['since'] or '?'}: {st['endpoint'] or 'its port'}{who} serves "
                   f"{st['served_fingerprint'][:16]}, not the certificate in this file (reload the service)")
    w = loc.get("windows")
    if w:
        key = ("key exportable" if w.get("key_exportable") else "key not exportable")
        prov = f", {w['key_provider']}" if w.get("key_provider") else ""
        name = f" \"{w['friendly_name']}\"" if w.get("friendly_name") else ""
        out.append(f"Windows store {w.get('store_location')}\\{w.get('store_name')} thumbprint {w.get('thumbprint')}"
                   f"{name}: {key}{prov}")
    for b in loc.get("iis_bindings") or ():
        host = b.get("host_name") or "*"
        out.append(f"IIS site {b.get('site')!r}: {b.get('protocol')} {b.get('ip')}:{b.get('port')} host {host}"
                   f"{' SNI' if b.get('sni') else ''} ({b.get('store_name')})")
    return out


def cert_dict(c: admin_pb2.CertificateInfo, now: dt.datetime) -> dict[str, Any]:
    not_after = ts(c.not_after)
    return {
        "fingerprint_sha256": c.fingerprint_sha256,
        "subject": c.subject,
        "issuer": c.issuer,
        "serial": c.serial,
        "sans": [f"{s.type}:{s.value}" for s in c.sans],
        "not_before": iso(ts(c.not_before)),
        "not_after": iso(not_after),
        "days_left": days_left(not_after, now) if not_after else None,
        "key_type": c.key_type,
        "key_size": c.key_size,
        "key_curve": c.key_curve or None,
        "signature_algorithm": c.signature_algorithm,
        "is_ca": c.is_ca,
        "self_signed": c.self_signed,
        "key_usage": list(c.key_usage),
        "extended_key_usage": list(c.extended_key_usage),
        "issuer_fingerprint_sha256": c.issuer_fingerprint_sha256 or None,
        "locations": [location_dict(loc) for loc in c.locations],
    }


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]], width: int, flex: int) -> str:
    """Columns sized to their content; column ``flex`` gives way (cut at its start) so the table fits ``width``."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    total = sum(widths) + 2 * (len(widths) - 1)
    if total > width:
        widths[flex] = max(12, widths[flex] - (total - width))
    out = io.StringIO()
    line = "  ".join(fit(h, w).ljust(w) for h, w in zip(headers, widths))
    out.write(line.rstrip() + "\n")
    for r in rows:
        cells = [(fit_left if i == flex else fit)(v, w).ljust(w) for i, (v, w) in enumerate(zip(r, widths))]
        out.write("  ".join(cells).rstrip() + "\n")
    return out.getvalue()


def where(c: admin_pb2.CertificateInfo) -> str:
    present = [loc for loc in c.locations if loc.status == "present"] or list(c.locations)
    if not present:
        return "-"
    first = present[0]
    alias = f" [{first.alias}]" if first.alias else ""
    more = f" (+{len(present) - 1})" if len(present) > 1 else ""
    return f"{first.hostname}:{first.path}{alias}{more}"


def certs_table(certs: Iterable[admin_pb2.CertificateInfo], now: dt.datetime, width: int) -> str:
    rows = []
    for c in certs:
        not_after = ts(c.not_after)
        left = days_left(not_after, now)
        rows.append([
            "EXPIRED" if left < 0 else str(left),
            not_after.strftime("%Y-%m-%d"),
            short_dn(c.subject) or "(empty subject)",
            key_desc(c),
            where(c),
            c.fingerprint_sha256[:12],
        ])
    if not rows:
        return "no certificates match\n"
    table = render_table(["DAYS", "NOT AFTER", "SUBJECT", "KEY", "WHERE", "FINGERPRINT"], rows, width, flex=4)
    return table + f"{len(rows)} certificate{'s' if len(rows) != 1 else ''}\n"


CSV_FIELDS = [
    "fingerprint_sha256", "subject", "issuer", "serial", "sans", "not_before", "not_after", "days_left",
    "key_type", "key_size", "signature_algorithm", "is_ca", "self_signed",
    "host", "store_type", "path", "alias", "chain_index", "has_private_key", "status",
]


def certs_csv(certs: Iterable[admin_pb2.CertificateInfo], now: dt.datetime, out: io.TextIOBase) -> None:
    """One row per certificate and location (a certificate with no location gets one row)."""
    w = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for c in certs:
        d = cert_dict(c, now)
        d["sans"] = " ".join(d["sans"])
        for loc in d["locations"] or [{}]:
            row = dict(d)
            row.update({k: loc.get(k, "") for k in ("host", "store_type", "path", "alias", "chain_index", "has_private_key", "status")})
            w.writerow(row)


def cert_detail(c: admin_pb2.CertificateInfo, now: dt.datetime) -> str:
    d = cert_dict(c, now)
    lines = [
        f"Fingerprint:  {d['fingerprint_sha256']}",
        f"Subject:      {d['subject']}",
        f"Issuer:       {d['issuer']}" + ("" if not d["issuer_fingerprint_sha256"] else f"  ({d['issuer_fingerprint_sha256'][:12]})"),
        f"Serial:       {d['serial']}",
        f"Valid:        {d['not_before']} .. {d['not_after']}  ({'EXPIRED' if d['days_left'] < 0 else str(d['days_left']) + ' days left'})",
        f"Key:          {key_desc(c)}",
        f"Signature:    {d['signature_algorithm']}",
        f"CA:           {'yes' if d['is_ca'] else 'no'}{', self-signed' if d['self_signed'] else ''}",
        f"SANs:         {', '.join(d['sans']) or '-'}",
        f"Key usage:    {', '.join(d['key_usage']) or '-'}",
        f"Ext. usage:   {', '.join(d['extended_key_usage']) or '-'}",
        f"Locations:    {len(d['locations'])}",
    ]
    for loc in d["locations"]:
        alias = f" alias={loc['alias']}" if loc["alias"] else ""
        key = "key:" + (loc["key_match"] if loc["has_private_key"] else "none") + (" (encrypted)" if loc["key_encrypted"] else "")
        perms = f"{loc['file_owner']}:{loc['file_group']} {loc['file_mode']} " if loc["store_type"] not in (
            "endpoint", "windows") else ""
        if loc["store_type"] == "endpoint":
            key = "served"        # seen in a handshake: no key, no file
        lines.append(
            f"  - [{loc['status']}] {loc['host']}:{loc['path']}{alias} #{loc['chain_index']} ({loc['store_type']}) {key} "
            f"{perms}last seen {loc['last_seen']}"
            + (f" removed {loc['removed_at']}" if loc["removed_at"] else "")
        )
        lines.extend("      " + line for line in location_facts(loc))
    return "\n".join(lines) + "\n"


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
        "errors": [
            {"store_type": e.store_type, "path": e.path, "alias": e.alias, "reason": e.reason, "message": e.message}
            for e in a.errors
        ],
    }


def agents_table(agents: Iterable[admin_pb2.AgentInfo], now: dt.datetime, width: int) -> str:
    rows, problems = [], []
    for a in agents:
        last = ts(a.last_seen, a.HasField("last_seen"))
        ago = _ago(now - last) if last else "never"
        rows.append([a.hostname, a.agent_id[:8], a.status, f"{a.os} {a.os_version}".strip(), a.agent_version,
                     ago, str(a.location_count), str(len(a.errors))])
        for e in a.errors:
            problems.append(f"  {a.hostname}: {e.path}{' [' + e.alias + ']' if e.alias else ''}: {e.reason}: {e.message}")
    if not rows:
        return "no agents enrolled yet (certfleet token create, then certfleet-agent enroll on the host)\n"
    out = render_table(["HOST", "AGENT", "STATUS", "OS", "VERSION", "LAST SEEN", "LOCATIONS", "ERRORS"], rows, width, flex=3)
    if problems:
        out += "\nScan errors:\n" + "\n".join(fit(p, max(width, 40)) for p in problems) + "\n"
    return out


def _ago(delta: dt.timedelta) -> str:
    s = max(0, int(delta.total_seconds()))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)


def job_dict(j: admin_pb2.JobInfo) -> dict[str, Any]:
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
        "result": json.loads(j.result_detail) if j.result_detail else None,
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
            j.job_id[:8], j.state, _ago(now - created) if created else "-",
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
        if d["result"].get("reload_seconds"):
            lines.append(f"  service reload took {d['result']['reload_seconds']:.2f}s")
    return "\n".join(lines) + "\n"
