"""``certfleet policy``, ``certfleet violations`` and ``certfleet exceptions``.

    certfleet policy show [--format text|json]
    certfleet policy set FILE [--reason TEXT]                  (role admin)
    certfleet violations list [--rule R] [--owner O] [--include-excepted] [--include-cleared]
                              [--format table|json|csv]
    certfleet exceptions add --rule R (--fingerprint FP | --owner O | --pattern GLOB) --reason TEXT
                             --expires 2027-01-31|30d          (roles admin and operator)
    certfleet exceptions list [--expired] [--all] [--format table|json]
    certfleet exceptions remove ID [--reason TEXT]

Rules, scopes and locks: collector/domain/policy.py.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import pathlib
import sys
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from certfleet.v1 import policy_pb2 as pb
from certfleet.v1 import policy_pb2_grpc
from collector.cli.args import is_number
from collector.cli.command import add_format, add_group, handles, terminal_width, utcnow
from collector.reports.text import SafeCsv
from collector.cli.format import dumps, iso, render_table, ts
from collector.config.core import ConfigError, parse_duration
from collector.errors import InvalidInput

TIMEOUT = 120.0
VIOLATION_FIELDS = ["rule", "reason", "host", "path", "alias", "owner", "environment", "subject", "fingerprint",
                    "first_seen", "last_seen", "cleared_at", "exception_id"]


def _stub(channel: grpc.Channel) -> policy_pb2_grpc.PolicyServiceStub:
    return policy_pb2_grpc.PolicyServiceStub(channel)


def parse_expiry(value: str, now: dt.datetime) -> dt.datetime:
    """``2027-01-31`` (end of that day, UTC), an ISO time, or a duration from now (``30d``, ``12h``, ``1w``)."""
    v = (value or "").strip()
    if not v:
        raise InvalidInput("--expires is required: a date (2027-01-31) or a duration (30d)")
    if not is_number(v):              # a bare number is neither a date nor a duration here
        try:
            return now + dt.timedelta(seconds=parse_duration(v, "--expires"))
        except ConfigError:
            pass                      # not a duration: a date or a time
    try:
        if len(v) == 10:
            d = dt.date.fromisoformat(v)
            return dt.datetime(d.year, d.month, d.day, 23, 59, 59, tzinfo=dt.timezone.utc)
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise InvalidInput(f"--expires {v!r} is not a date (2027-01-31), a time or a duration (30d)") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def violation_dict(v: pb.ViolationInfo) -> dict[str, Any]:
    return {
        "id": v.id, "rule": v.rule, "reason": v.reason, "host": v.hostname, "agent_id": v.agent_id,
        "store_type": v.store_type, "path": v.path, "alias": v.alias, "chain_index": v.chain_index,
        "owner": v.owner, "environment": v.environment, "subject": v.subject, "fingerprint": v.fingerprint_sha256,
        "not_after": iso(ts(v.not_after, v.HasField("not_after"))),
        "first_seen": iso(ts(v.first_seen)),
        "last_seen": iso(ts(v.last_seen)),
        "cleared_at": iso(ts(v.cleared_at, v.HasField("cleared_at"))),
        "exception_id": v.exception_id or None,
    }


def exception_dict(e: pb.ExceptionInfo) -> dict[str, Any]:
    target = (f"certificate {e.fingerprint_sha256[:16]}" if e.fingerprint_sha256
              else f"owner {e.owner}" if e.owner else f"pattern {e.pattern}")
    return {
        "id": e.id, "rule": e.rule, "target": target, "fingerprint": e.fingerprint_sha256, "owner": e.owner,
        "pattern": e.pattern, "reason": e.reason, "granted_by": e.granted_by,
        "created_at": iso(ts(e.created_at)), "expires_at": iso(ts(e.expires_at)),
        "expired": e.expired,
    }


def cmd_policy_show(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    p = _stub(channel).GetPolicy(pb.GetPolicyRequest(), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps({
            "version": p.version, "source": p.source, "sha256": p.sha256, "created_by": p.created_by,
            "reason": p.reason, "created_at": iso(ts(p.created_at, p.HasField("created_at"))),
            "document": p.document, "rules": list(p.rules),
        }))
        return 0
    when = iso(ts(p.created_at, p.HasField("created_at")))
    print(f"# policy version {p.version} ({p.source}" + (f", by {p.created_by} at {when}" if when else "") + ")")
    sys.stdout.write(p.document if p.document.endswith("\n") else p.document + "\n")
    return 0


def cmd_policy_set(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    try:
        text = pathlib.Path(ns.file).read_text() if ns.file != "-" else sys.stdin.read()
    except OSError as e:
        raise InvalidInput(f"cannot read {ns.file}: {e.strerror}") from None
    p = _stub(channel).SetPolicy(pb.SetPolicyRequest(document=text, reason=ns.reason or ""), timeout=TIMEOUT)
    print(f"policy version {p.version} stored (sha256 {p.sha256[:16]}); violations are being evaluated again")
    return 0


def cmd_violations_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    req = pb.ListViolationsRequest(rule=ns.rule or "", owner=ns.owner or "", include_excepted=ns.include_excepted,
                                   include_cleared=ns.include_cleared)
    items = (v for page in _stub(channel).ListViolations(req, timeout=TIMEOUT) for v in page.violations)
    if ns.format == "json":
        out = sys.stdout
        out.write("[")
        for i, v in enumerate(items):
            out.write(("," if i else "") + "\n" + dumps(violation_dict(v)))
        out.write("\n]\n")
        return 0
    if ns.format == "csv":
        w = SafeCsv(csv.DictWriter(sys.stdout, fieldnames=VIOLATION_FIELDS, extrasaction="ignore"))
        w.writeheader()
        for v in items:
            w.writerow({k: ("" if x is None else x) for k, x in violation_dict(v).items()})
        return 0
    rows = []
    for v in items:
        d = violation_dict(v)
        state = "cleared" if v.HasField("cleared_at") else (f"waived #{v.exception_id}" if v.exception_id else "")
        rows.append([v.rule, v.reason, f"{v.hostname}:{v.path}" + (f" [{v.alias}]" if v.alias else ""),
                     v.owner or "-", v.environment or "-", (d["first_seen"] or "")[:10], state,
                     v.fingerprint_sha256[:12]])
    if not rows:
        print("no violations")
        return 0
    width = terminal_width(140)
    sys.stdout.write(render_table(
        ["RULE", "REASON", "WHERE", "OWNER", "ENV", "SINCE", "STATE", "FINGERPRINT"], rows, width, flex=2))
    print(f"{len(rows)} violation{'s' if len(rows) != 1 else ''}")
    return 0


def cmd_exceptions_add(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    expires = parse_expiry(ns.expires, utcnow())
    expires_at = Timestamp()
    expires_at.FromDatetime(expires)
    e = _stub(channel).AddException(pb.AddExceptionRequest(
        rule=ns.rule, fingerprint=ns.fingerprint or "", owner=ns.owner or "", pattern=ns.pattern or "",
        reason=ns.reason, expires_at=expires_at), timeout=TIMEOUT)
    d = exception_dict(e)
    print(f"exception {e.id}: rule {e.rule} waived for {d['target']} until {d['expires_at']}")
    return 0


def cmd_exceptions_list(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    req = pb.ListExceptionsRequest(expired_only=ns.expired, include_expired=ns.all)
    items = [exception_dict(e) for page in _stub(channel).ListExceptions(req, timeout=TIMEOUT)
             for e in page.exceptions]
    if ns.format == "json":
        print(dumps(items))
        return 0
    if not items:
        print("no expired exceptions" if ns.expired else "no exceptions in force")
        return 0
    rows = [[str(d["id"]), d["rule"], d["target"], (d["expires_at"] or "")[:10] + (" EXPIRED" if d["expired"] else ""),
             d["granted_by"], d["reason"]] for d in items]
    width = terminal_width(140)
    sys.stdout.write(render_table(["ID", "RULE", "FOR", "EXPIRES", "GRANTED BY", "REASON"], rows, width,
                                  flex=5))
    return 0


def cmd_exceptions_remove(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    e = _stub(channel).RemoveException(pb.RemoveExceptionRequest(id=ns.id, reason=ns.reason or ""), timeout=TIMEOUT)
    print(f"exception {e.id} removed (rule {e.rule} for {exception_dict(e)['target']})")
    return 0


def register(subparsers: Any) -> None:
    """Add ``policy``, ``violations`` and ``exceptions`` to the ``certfleet`` parser's subcommands."""
    policy = add_group(subparsers, "policy", "the certificate policy")
    s = policy.add_parser("show", help="the current policy document")
    add_format(s, "text", "json")
    handles(s, cmd_policy_show)
    s = policy.add_parser("set", help="store a new policy document (TOML; - for stdin)")
    s.add_argument("file")
    s.add_argument("--reason", help="why (kept in the audit trail)")
    handles(s, cmd_policy_set)

    viol = add_group(subparsers, "violations", "policy violations")
    s = viol.add_parser("list", help="active violations (not waived by an exception)")
    s.add_argument("--rule")
    s.add_argument("--owner")
    s.add_argument("--include-excepted", action="store_true", help="also those waived by an exception")
    s.add_argument("--include-cleared", action="store_true", help="also those whose cause is gone")
    add_format(s, "table", "json", "csv")
    handles(s, cmd_violations_list)

    exc = add_group(subparsers, "exceptions", "policy exceptions")
    s = exc.add_parser("add", help="waive a rule for a certificate, an owner or a pattern, until a date")
    s.add_argument("--rule", required=True, help="a rule name, or * for every rule")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--fingerprint", help="a certificate (unique prefix of its SHA-256 fingerprint)")
    who.add_argument("--owner")
    who.add_argument("--pattern", metavar="GLOB", help="DNS glob on the certificate's names or the host")
    s.add_argument("--reason", required=True)
    s.add_argument("--expires", required=True, help="a date (2027-01-31) or a duration from now (30d)")
    handles(s, cmd_exceptions_add)
    s = exc.add_parser("list", help="exceptions in force (--expired: the expired ones)")
    s.add_argument("--expired", action="store_true", help="only expired exceptions")
    s.add_argument("--all", action="store_true", help="in force and expired")
    add_format(s, "table", "json")
    handles(s, cmd_exceptions_list)
    s = exc.add_parser("remove", help="remove an exception (its violations apply again)")
    s.add_argument("id", type=int)
    s.add_argument("--reason", help="why (kept in the audit trail)")
    handles(s, cmd_exceptions_remove)
