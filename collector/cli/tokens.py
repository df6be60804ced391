"""``certfleet token create``: a single-use enrollment token for one new agent.

    certfleet token create [--ttl 1h] [--note TEXT] [--host NAME] [--format text|json]

``--host`` binds the token to a host name: the agent it enrolls is recorded under that name (the
one authorization, auto-renew and owner rules use), whatever name the host reports.

The text format prints the token alone on standard output (for scripts) and how to use it on
standard error. ``--ttl`` is a duration; a bare number is seconds.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.cli.args import seconds
from collector.cli.command import TIMEOUT, add_format, add_group, handles
from collector.cli.format import dumps, iso, ts


def cmd_token_create(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    ttl = seconds(ns.ttl, "--ttl")
    r = admin_pb2_grpc.AdminServiceStub(channel).CreateEnrollmentToken(
        admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=ttl, note=ns.note or "", bound_host=ns.host or ""), timeout=TIMEOUT)
    expires = iso(ts(r.expires_at))
    if ns.format == "json":
        print(dumps({
            "token": r.token, "expires_at": expires, "ca_fingerprint_sha256": r.ca_fingerprint_sha256,
            "enrollment_endpoint": r.enrollment_endpoint, "bound_host": ns.host or "",
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


def register(subparsers: Any) -> None:
    """Add ``token create`` to the ``certfleet`` parser's subcommands."""
    tok = add_group(subparsers, "token", "enrollment tokens")
    s = tok.add_parser("create", help="print a single-use enrollment token")
    s.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 2d (default 1h)")
    s.add_argument("--note", help="why the token exists (stored with it)")
    s.add_argument("--host", help="bind the token: the agent is recorded under this host name")
    add_format(s, "text", "json")
    handles(s, cmd_token_create)
