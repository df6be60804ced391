"""``certfleet audit ...``: verify, list and export the collector's hash-chained audit trail.

    certfleet audit verify                      exit 0 when intact, 1 naming the first broken event
    certfleet audit verify --file audit.jsonl [--key-file K]   check an export offline (its events must
                                                follow each other; keyed events' HMACs with the key file)
    certfleet audit verify --checkpoint FILE    the trail as the collector verifies it, and still holding
                                                the event of a checkpoint exported earlier
    certfleet audit checkpoint export [--out FILE]   the newest signed checkpoint, its signature checked
    certfleet audit export [--since ISO] [--until ISO] [--out FILE]    JSON lines, oldest first
    certfleet audit list [--since ISO] [--until ISO] [--actor A] [--action X] [--target T] [--limit N]
                         [--format table|json]                         newest first

Needs an admin identity whose role may read the audit trail (admin, auditor).
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import pathlib
import sys
from typing import Any, Iterable, Iterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from certfleet.v1 import audit_pb2, audit_pb2_grpc
from collector.cli.args import parse_time
from collector.cli.command import TIMEOUT, add_format, add_group, handles, terminal_width
from collector.cli.format import dumps, fit
from collector.config.client import load_client_config
from collector.domain.auditchain import (
    CHECKPOINT, CHECKPOINT_FIELDS, at_text, checkpoint_signed, parse_at, parse_audit_key, verify_events,
)
from collector.errors import CollectorError, InvalidInput

EXPORT_TIMEOUT = 3600.0
UTC = dt.timezone.utc


def _ts(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    t = Timestamp()
    t.FromDatetime(value)
    return t


def event_dict(e: audit_pb2.AuditEvent) -> dict[str, Any]:
    """As the registry exports it (collector.registry.audit.AuditEventView.to_dict): verifiable offline."""
    return {
        "seq": e.seq, "at": at_text(e.at.ToDatetime(tzinfo=UTC)), "actor": e.actor, "action": e.action,
        "target": e.target, "reason": e.reason, "detail": json.loads(e.detail_json) if e.detail_json else {},
        "prev_hash": e.prev_hash, "hash": e.hash,
    }


def _short_time(at: str) -> str:
    return at[:19] + "Z" if len(at) >= 19 else at


def events_table(events: Iterable[dict[str, Any]], width: int) -> str:
    """Columns sized to their content; the reason (last) is cut at its end to fit ``width``."""
    headers = ["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "REASON"]
    rows = [[str(e["seq"]), _short_time(e["at"]), e["actor"], e["action"], e["target"],
             " ".join(e["reason"].split())] for e in events]
    if not rows:
        return "no audit events\n"
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers[:-1])]
    room = max(24, width - sum(widths) - 2 * len(widths))
    lines = []
    for r in [headers, *rows]:
        cells = [v.ljust(w) for v, w in zip(r, widths)] + [fit(r[-1], room)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


# -- commands --------------------------------------------------------------------------------


def cmd_verify(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    if ns.file:
        key = _read_key(pathlib.Path(ns.key_file)) if ns.key_file else None
        result = verify_events(_read_jsonl(pathlib.Path(ns.file)), key=key)
        if result.ok:
            print(f"export {ns.file} is intact: {result.checked} event(s) follow each other")
            if result.unauthenticated:
                print(f"  {result.unauthenticated} keyed event(s) checked for their links only "
                      "(pass --key-file to check their HMACs)")
            return 0
        print(f"export {ns.file} is BROKEN at {result.reason}")
        return 1
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    r = stub.VerifyAudit(audit_pb2.VerifyAuditRequest(), timeout=EXPORT_TIMEOUT)
    if ns.checkpoint and r.ok:
        return checkpoint_check(stub, ns, r)
    if ns.format == "json":
        print(dumps({"ok": r.ok, "checked": r.checked, "first_broken_seq": r.first_broken_seq or None,
                     "reason": r.reason or None, "anchor_seq": r.anchor_seq, "last_seq": r.last_seq}))
        return 0 if r.ok else 1
    if r.ok:
        since = f" since the retention anchor (seq {r.anchor_seq})" if r.anchor_seq else ""
        print(f"audit trail intact: {r.checked} event(s) checked{since}, newest seq {r.last_seq}")
        return 0
    print(f"audit trail BROKEN: {r.reason}")
    print(f"  {r.checked} event(s) before it are intact; first broken: seq {r.first_broken_seq}")
    return 1


def _signed(cp: dict[str, Any], ns: argparse.Namespace) -> bool:
    """Signed by the CA this admin trusts (the client config's ``ca``)."""
    ca = load_client_config(ns.config).ca
    try:
        ca_pem = ca.read_bytes()
    except OSError as e:
        raise CollectorError(f"cannot read the CA certificate {ca}: {e.strerror}") from None
    try:
        signature = base64.b64decode(cp["signature"], validate=True)
    except (KeyError, TypeError, ValueError):
        return False
    return checkpoint_signed(cp, signature, ca_pem)


def _read_key(path: pathlib.Path) -> bytes:
    try:
        return parse_audit_key(path.read_text(encoding="ascii"))
    except OSError as e:
        raise CollectorError(f"cannot read the audit key {path}: {e.strerror}") from None
    except (ValueError, UnicodeError) as e:
        raise InvalidInput(f"{path}: not an audit key: {e}") from None


def checkpoint_check(stub: Any, ns: argparse.Namespace, r: Any) -> int:
    """The trail verified intact by the collector: does it still hold the checkpoint's event?"""
    try:
        cp = json.loads(pathlib.Path(ns.checkpoint).read_text(encoding="utf-8"))
    except OSError as e:
        raise CollectorError(f"cannot read {ns.checkpoint}: {e.strerror}") from None
    except ValueError:
        raise InvalidInput(f"{ns.checkpoint}: not a checkpoint (JSON)") from None
    if not isinstance(cp, dict) or not _signed(cp, ns):
        print(f"checkpoint {ns.checkpoint} is NOT signed by this collector's CA: not checked against it")
        return 1
    seq = int(cp["seq"])
    if seq <= r.anchor_seq:
        print(f"audit trail intact: {r.checked} event(s) checked; checkpoint event {seq} is older than the "
              f"retention anchor (seq {r.anchor_seq}), so only the chain since the anchor could be checked")
        return 0
    if seq > r.last_seq:
        print(f"audit trail BROKEN: the checkpoint knows event {seq} but the trail ends at {r.last_seq}; "
              "the newest events were deleted")
        return 1
    at = parse_at(cp["event_at"])
    found = None
    for page in stub.ExportAudit(audit_pb2.ExportAuditRequest(
            since=_ts(at), until=_ts(at + dt.timedelta(microseconds=1))), timeout=EXPORT_TIMEOUT):
        for e in page.events:
            if e.seq == seq:
                found = e
    if found is None or found.hash != cp["hash"]:
        print(f"audit trail BROKEN: checkpoint event {seq} ({cp['event_at']}) is "
              f"{'gone' if found is None else 'changed'}; the trail was rewritten or cut back")
        return 1
    print(f"audit trail intact: {r.checked} event(s) checked, newest seq {r.last_seq}; "
          f"it holds checkpoint event {seq} unchanged")
    return 0


def cmd_checkpoint_export(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    r = stub.ListAudit(audit_pb2.ListAuditRequest(action=CHECKPOINT, limit=1), timeout=TIMEOUT)
    if not r.events:
        raise CollectorError("no audit checkpoint yet ([audit] checkpoint_interval; the collector makes "
                             "one soon after it starts)")
    detail = json.loads(r.events[0].detail_json or "{}")
    cp = {k: detail.get(k) for k in (*CHECKPOINT_FIELDS, "signature", "ca_fingerprint")}
    if not _signed(cp, ns):
        raise CollectorError(f"the newest checkpoint (event {r.events[0].seq}) is not signed by this "
                             "collector's CA; someone with database access may have written it")
    text = json.dumps(cp, sort_keys=True, indent=2) + "\n"
    if ns.out:
        pathlib.Path(ns.out).write_text(text, encoding="utf-8")
        print(f"checkpoint of event {cp['seq']} written to {ns.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _read_jsonl(path: pathlib.Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise InvalidInput(f"{path}:{n}: not JSON: {e.msg}") from None
    except OSError as e:
        raise CollectorError(f"cannot read {path}: {e.strerror}") from None


def cmd_export(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    req = audit_pb2.ExportAuditRequest(
        since=_ts(parse_time(ns.since, "--since") if ns.since else None),
        until=_ts(parse_time(ns.until, "--until") if ns.until else None),
    )
    out_path = pathlib.Path(ns.out) if ns.out else None
    tmp = out_path.with_name(out_path.name + ".part") if out_path else None
    n = 0
    out = tmp.open("w", encoding="utf-8") if tmp else sys.stdout
    try:
        for page in stub.ExportAudit(req, timeout=EXPORT_TIMEOUT):
            for e in page.events:
                out.write(json.dumps(event_dict(e), sort_keys=True, ensure_ascii=False) + "\n")
                n += 1
    except BaseException:
        if tmp:
            out.close()
            tmp.unlink(missing_ok=True)
        raise
    if tmp and out_path:
        out.close()
        tmp.replace(out_path)
        print(f"{n} audit event(s) written to {out_path}", file=sys.stderr)
    return 0


def cmd_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    if ns.limit < 1:
        raise InvalidInput("--limit must be at least 1")
    r = stub.ListAudit(audit_pb2.ListAuditRequest(
        since=_ts(parse_time(ns.since, "--since") if ns.since else None),
        until=_ts(parse_time(ns.until, "--until") if ns.until else None),
        actor=ns.actor or "", action=ns.action or "", target=ns.target or "", limit=ns.limit,
    ), timeout=TIMEOUT)
    events = [event_dict(e) for e in r.events]
    if ns.format == "json":
        print(dumps(events))
    else:
        sys.stdout.write(events_table(events, terminal_width()))
    return 0


def register(subparsers: Any) -> None:
    """Add ``audit verify|export|list`` to the ``certfleet`` parser's subcommands."""
    audit = add_group(subparsers, "audit", "the tamper-evident audit trail", dest="audit_command")

    s = audit.add_parser("verify", help="check the hash chain; exit 1 naming the first broken event")
    s.add_argument("--file", metavar="JSONL", help="check an export offline instead of the collector's trail")
    s.add_argument("--key-file", metavar="KEY", help="with --file: the audit key, to check keyed events' HMACs")
    s.add_argument("--checkpoint", metavar="FILE", help="also check the trail still holds this exported checkpoint")
    add_format(s, "text", "json")
    handles(s, cmd_verify)

    s = audit.add_parser("export", help="events as JSON lines, oldest first")
    s.add_argument("--since", metavar="ISO", help="from this time (e.g. 2026-01-01 or 2026-01-01T00:00:00Z)")
    s.add_argument("--until", metavar="ISO", help="up to this time (exclusive)")
    s.add_argument("--out", metavar="FILE", help="write to FILE (default: standard output)")
    handles(s, cmd_export)

    s = audit.add_parser("list", help="recent events, newest first")
    s.add_argument("--since", metavar="ISO")
    s.add_argument("--until", metavar="ISO")
    s.add_argument("--actor", help="e.g. admin:alice, agent:<id>, auto-renew")
    s.add_argument("--action", help="e.g. enroll, call.refused, or a prefix: job, token")
    s.add_argument("--target", help="e.g. job:<id>, agent:<id>")
    s.add_argument("--limit", type=int, default=50)
    add_format(s, "table", "json")
    handles(s, cmd_list)

    cp = audit.add_parser("checkpoint", help="signed checkpoints of the chain's head")
    cps = cp.add_subparsers(dest="checkpoint_command", required=True)
    s = cps.add_parser("export", help="write the newest signed checkpoint (for an external system to keep)")
    s.add_argument("--out", metavar="FILE", help="write to FILE (default: standard output)")
    handles(s, cmd_checkpoint_export)
