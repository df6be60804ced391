"""``certfleet notify ...``: run the notifier now and see what the channels delivered.

    certfleet notify run                               admin only: one notification run now
    certfleet notify deliveries [--failed] [--state pending|sent|failed] [--limit N] [--format table|json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

import grpc

from certfleet.v1 import notify_pb2, notify_pb2_grpc
from collector.cli.command import add_format, add_group, handles, terminal_width
from collector.cli.format import dumps, fit

TIMEOUT = 600.0
UTC = dt.timezone.utc


def _when(value: Any, present: bool) -> str | None:
    return value.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds") if present else None


def delivery_dict(d: notify_pb2.Delivery) -> dict[str, Any]:
    return {
        "id": d.id, "digest_id": d.digest_id, "owner": d.owner, "channel": d.channel, "target": d.target,
        "subject": d.subject, "state": d.state, "attempts": d.attempts, "last_error": d.last_error,
        "next_attempt_at": _when(d.next_attempt_at, d.HasField("next_attempt_at")),
        "created_at": _when(d.created_at, d.HasField("created_at")),
        "sent_at": _when(d.sent_at, d.HasField("sent_at")),
    }


def cmd_run(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = notify_pb2_grpc.NotifyServiceStub(channel).RunNow(notify_pb2.RunNowRequest(), timeout=TIMEOUT)
    if ns.format == "json":
        print(dumps({"notices": r.notices, "digests": r.digests, "sent": r.sent,
                     "retrying": r.retrying, "failed": r.failed}))
    else:
        print(f"{r.notices} notice(s) in {r.digests} digest(s); deliveries: {r.sent} sent, "
              f"{r.retrying} retrying, {r.failed} failed")
    return 1 if r.failed else 0


def cmd_deliveries(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = notify_pb2_grpc.NotifyServiceStub(channel).ListDeliveries(
        notify_pb2.ListDeliveriesRequest(state=ns.state or "", failed=ns.failed, limit=ns.limit), timeout=60)
    rows = [delivery_dict(d) for d in r.deliveries]
    if ns.format == "json":
        print(dumps(rows))
        return 0
    if not rows:
        print("no deliveries")
        return 0
    width = terminal_width()
    headers = ["ID", "STATE", "TRIES", "CHANNEL", "OWNER", "TARGET", "CREATED", "LAST ERROR"]
    table = [[str(d["id"]), d["state"], str(d["attempts"]), d["channel"], d["owner"] or "-", d["target"] or "-",
              (d["created_at"] or "")[:19], " ".join(d["last_error"].split()) or "-"] for d in rows]
    widths = [max([len(h)] + [len(t[i]) for t in table]) for i, h in enumerate(headers[:-1])]
    room = max(20, width - sum(widths) - 2 * len(widths))
    for t in [headers, *table]:
        sys.stdout.write("  ".join([v.ljust(w) for v, w in zip(t, widths)] + [fit(t[-1], room)]).rstrip() + "\n")
    return 0


def register(subparsers: Any) -> None:
    """Add ``notify run|deliveries`` to the ``certfleet`` parser's subcommands."""
    notify = add_group(subparsers, "notify", "expiry and event notifications", dest="notify_command")
    s = notify.add_parser("run", help="run the notifier once now (admin only)")
    add_format(s, "text", "json")
    handles(s, cmd_run)
    s = notify.add_parser("deliveries", help="channel deliveries, newest first")
    s.add_argument("--failed", action="store_true", help="only failed ones and those being retried")
    s.add_argument("--state", choices=["pending", "sent", "failed"])
    s.add_argument("--limit", type=int, default=50)
    add_format(s, "table", "json")
    handles(s, cmd_deliveries)
