"""``certfleet report NAME``: reports for security and audit, rendered here from what the collector built.

    certfleet report expiring [--within 90d] [--all | --limit N] what expires within 7, 30 and 90 days
    certfleet report owners                                     orphaned and unconfirmed certificates
    certfleet report coverage [--silent-after 1d]               agents, stores, scan errors, silent hosts
    certfleet report audit [--since ISO] [--until ISO]          who did what, when and why (admin, auditor)
    ... [--format table|csv|json|html] [--out FILE] [--param KEY=VALUE ...]

``expiring`` as a table shows the summary, the counts per owner and the soonest
``TABLE_LIMIT`` (100) rows of each window: at fleet size a window holds tens of thousands
of locations, which no one reads in a terminal. ``--all`` shows every row; CSV, JSON and
HTML have every row unless ``--limit N`` is given.

``--out`` writes the file atomically (a ``.part`` file renamed into place); without it the
report goes to standard output. HTML is one self-contained file, printable. ``--param``
passes any other parameter a report takes (for reports added later, e.g. ``violations``).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any

import grpc

from certfleet.v1 import report_pb2, report_pb2_grpc
from collector.cli.args import parse_time
from collector.cli.command import add_format, handles, terminal_width
from collector.errors import CollectorError, InvalidInput
from collector.reports import REPORTS
from collector.reports.model import iso
from collector.reports.render import FORMATS, render
from collector.api.report_codec import from_parts

TIMEOUT = 600.0
TABLE_LIMIT = 100        # detail rows per section of a table, for reports that take "limit"


def request_params(ns: argparse.Namespace) -> dict[str, str]:
    """The parameters given on the command line, as the collector takes them (strings)."""
    params: dict[str, str] = {}
    for item in ns.param or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--param {item!r}: use KEY=VALUE")
        params[key.strip().replace("-", "_")] = value.strip()
    if ns.within:
        params["within"] = ns.within
    if ns.silent_after:
        params["silent_after"] = ns.silent_after
    if ns.since:
        params["since"] = iso(parse_time(ns.since, "--since")) or ""
    if ns.until:
        params["until"] = iso(parse_time(ns.until, "--until")) or ""
    if ns.limit is not None:
        if ns.limit < 0:
            raise InvalidInput("--limit: must be 0 or more")
        params["limit"] = str(ns.limit)
    elif (not getattr(ns, "all", False) and ns.format == "table" and ns.name in REPORTS
          and "limit" in REPORTS[ns.name].params):
        params["limit"] = str(TABLE_LIMIT)
    return params


def write_out(text: str, out: str | None) -> None:
    if not out:
        sys.stdout.write(text)
        return
    path = pathlib.Path(out)
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CollectorError(f"cannot write {path}: {e.strerror}") from None


def cmd_report(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    params = request_params(ns)
    stub = report_pb2_grpc.ReportServiceStub(channel)
    report = from_parts(stub.GetReport(report_pb2.GetReportRequest(name=ns.name, params=params), timeout=TIMEOUT))
    width = terminal_width()
    write_out(render(report, ns.format, width), ns.out)
    if ns.out:
        rows = sum(len(s.rows) for s in report.sections)
        print(f"report {report.name} written to {ns.out} ({ns.format}, {rows} row(s))", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add ``report NAME`` to the ``certfleet`` parser's subcommands."""
    known = "; ".join(f"{name}: {s.description}" for name, s in REPORTS.items())
    s = subparsers.add_parser("report", help="reports for security and audit (expiring, owners, coverage, audit)",
                              description=f"Reports: {known}.")
    s.add_argument("name", metavar="NAME", help=f"one of {', '.join(REPORTS)}")
    add_format(s, *FORMATS)
    s.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    s.add_argument("--within", metavar="DURATION", help="expiring: the horizon (default 90d)")
    s.add_argument("--silent-after", metavar="DURATION", help="coverage: a host is silent after this (default 1d)")
    s.add_argument("--since", metavar="ISO", help="audit: from this time (default: 30 days ago)")
    s.add_argument("--until", metavar="ISO", help="audit: up to this time, exclusive (default: now)")
    rows = s.add_mutually_exclusive_group()
    rows.add_argument("--limit", type=int, metavar="N",
                      help=f"expiring: at most N detail rows per window (table default {TABLE_LIMIT}; others: all)")
    rows.add_argument("--all", action="store_true", help="expiring: every detail row, also in a table")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="any other report parameter")
    handles(s, cmd_report)
