"""``certfleet certs list|show``: the certificates in the registry, with where they are and what uses them.

    certfleet certs list [--expiring-within AGE] [--host H] [--issuer TEXT] [--include-removed]
                         [--format table|json|csv|jsonl]
    certfleet certs show FINGERPRINT [--format table|json] [--pem]
"""
from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import io
import json
import sys
import textwrap
from typing import Any, Iterable

import grpc
from google.protobuf import json_format

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.cli.args import days_or_duration
from collector.cli.command import TIMEOUT, add_format, add_group, handles, terminal_width, utcnow
from collector.reports.text import SafeCsv
from collector.cli.format import days_left, dumps, iso, render_table, short_dn, ts
from collector.domain.names import NOT_TEXT_MARK, not_yet_valid, readable_name

# -- the certificate as JSON, a table, CSV and a detail page ----------------------------------


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
    """A certificate as JSON. ``subject``/``issuer`` are as the registry keeps them (``#`` and hex DER
    for a name that is not valid text); ``subject_text``/``issuer_text`` are for reading (such a name
    decoded with replacement characters) and ``names_not_text`` says which were; ``not_yet_valid``:
    the not-before is later than now."""
    not_after = ts(c.not_after)
    not_before = ts(c.not_before)
    subject, bad_subject = readable_name(c.subject)
    issuer, bad_issuer = readable_name(c.issuer)
    return {
        "fingerprint_sha256": c.fingerprint_sha256,
        "subject": c.subject,
        "issuer": c.issuer,
        "subject_text": subject,
        "issuer_text": issuer,
        "names_not_text": [n for n, bad in (("subject", bad_subject), ("issuer", bad_issuer)) if bad],
        "serial": c.serial,
        "sans": [f"{s.type}:{s.value}" for s in c.sans],
        "not_before": iso(not_before),
        "not_after": iso(not_after),
        "days_left": days_left(not_after, now) if not_after else None,
        "not_yet_valid": not_yet_valid(not_before, now),
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
            "NOT YET" if not_yet_valid(ts(c.not_before), now) else "EXPIRED" if left < 0 else str(left),
            not_after.strftime("%Y-%m-%d"),
            short_dn(readable_name(c.subject)[0]) or "(empty subject)",
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
    w = SafeCsv(csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore"))
    w.writeheader()
    for c in certs:
        d = cert_dict(c, now)
        d["sans"] = " ".join(d["sans"])
        for loc in d["locations"] or [{}]:
            row = dict(d)
            row.update({k: loc.get(k, "") for k in ("host", "store_type", "path", "alias", "chain_index", "has_private_key", "status")})
            w.writerow(row)


def _validity(d: dict[str, Any], c: admin_pb2.CertificateInfo, now: dt.datetime) -> str:
    if d["not_yet_valid"]:
        wait = ts(c.not_before) - now
        when = f"{wait.days} day(s)" if wait.days else f"{max(1, int(wait.total_seconds() // 3600))} hour(s)"
        return f"NOT YET VALID: valid from {d['not_before']}, in {when}; clients refuse it until then"
    return "EXPIRED" if d["days_left"] < 0 else f"{d['days_left']} days left"


def certs_jsonl(certs: Iterable[admin_pb2.CertificateInfo], now: dt.datetime, out: io.TextIOBase) -> None:
    """One JSON object per line as the pages arrive (nothing held back), then the end mark
    ``{"summary": {"certificates": N, "complete": true}}``: a stream without it was cut (the
    command then exits non-zero)."""
    n = 0
    for c in certs:
        out.write(json.dumps(cert_dict(c, now), separators=(",", ":")) + "\n")
        n += 1
    out.write(json.dumps({"summary": {"certificates": n, "complete": True}}) + "\n")


def cert_detail(c: admin_pb2.CertificateInfo, now: dt.datetime) -> str:
    d = cert_dict(c, now)
    mark = {n: f"  {NOT_TEXT_MARK}" for n in d["names_not_text"]}
    lines = [
        f"Fingerprint:  {d['fingerprint_sha256']}",
        f"Subject:      {d['subject_text']}{mark.get('subject', '')}",
        f"Issuer:       {d['issuer_text']}{mark.get('issuer', '')}"
        + ("" if not d["issuer_fingerprint_sha256"] else f"  ({d['issuer_fingerprint_sha256'][:12]})"),
        f"Serial:       {d['serial']}",
        f"Valid:        {d['not_before']} .. {d['not_after']}  ({_validity(d, c, now)})",
        f"Key:          {key_desc(c)}",
        f"Signature:    {d['signature_algorithm']}",
        f"CA:           {'yes' if d['is_ca'] else 'no'}{', self-signed' if d['self_signed'] else ''}",
        f"SANs:         {', '.join(d['sans']) or '-'}",
        f"Key usage:    {', '.join(d['key_usage']) or '-'}",
        f"Ext. usage:   {', '.join(d['extended_key_usage']) or '-'}",
        f"Locations:    {len(d['locations'])}" + _also_on(d["locations"]),
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


def _also_on(locations: list[dict]) -> str:
    """", also on N more hosts" when agents other than the first report it (issue 11: a certificate
    reported by several agents renews only where each host is authorized)."""
    hosts = {loc.get("agent") or loc.get("host") for loc in locations if loc.get("status") == "present"}
    return f"  (also on {len(hosts) - 1} other host(s): each renewed only where authorized)" if len(hosts) > 1 else ""


# -- commands ---------------------------------------------------------------------------------


def cmd_certs_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    req = admin_pb2.ListCertificatesRequest(
        expiring_within_seconds=days_or_duration(ns.expiring_within, "--expiring-within") if ns.expiring_within else 0,
        host=ns.host or "",
        issuer_contains=ns.issuer or "",
        include_removed=ns.include_removed,
    )
    now = utcnow()
    pages = admin_pb2_grpc.AdminServiceStub(channel).ListCertificates(req, timeout=TIMEOUT)
    certs = (c for page in pages for c in page.certificates)
    if ns.format == "json":
        out = sys.stdout
        out.write("[")
        for i, c in enumerate(certs):
            out.write(("," if i else "") + "\n" + json.dumps(cert_dict(c, now), indent=2))
        out.write("\n]\n")
    elif ns.format == "csv":
        certs_csv(certs, now, sys.stdout)
    elif ns.format == "jsonl":
        certs_jsonl(certs, now, sys.stdout)
    else:
        sys.stdout.write(certs_table(certs, now, terminal_width()))
    return 0


def cmd_certs_show(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    c = admin_pb2_grpc.AdminServiceStub(channel).GetCertificate(
        admin_pb2.GetCertificateRequest(fingerprint_prefix=ns.fingerprint), timeout=TIMEOUT)
    now = utcnow()
    if ns.pem:
        b64 = base64.b64encode(c.der).decode()
        print("-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(b64, 64)) + "\n-----END CERTIFICATE-----")
    elif ns.format == "json":
        print(dumps(cert_dict(c, now)))
    else:
        sys.stdout.write(cert_detail(c, now))
    return 0


def register(subparsers: Any) -> None:
    """Add ``certs list|show`` to the ``certfleet`` parser's subcommands."""
    certs = add_group(subparsers, "certs", "certificates in the registry")
    s = certs.add_parser("list", help="list certificates")
    s.add_argument("--expiring-within", metavar="AGE", help="e.g. 30d, 12h (plain numbers are days)")
    s.add_argument("--host", help="only certificates on this host")
    s.add_argument("--issuer", metavar="TEXT", help="issuer DN contains TEXT (case-insensitive)")
    s.add_argument("--include-removed", action="store_true", help="also certificates seen only at removed locations")
    add_format(s, "table", "json", "csv", "jsonl")
    handles(s, cmd_certs_list)
    s = certs.add_parser("show", help="one certificate in full")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix of it")
    add_format(s, "table", "json")
    s.add_argument("--pem", action="store_true", help="print the certificate as PEM")
    handles(s, cmd_certs_show)
