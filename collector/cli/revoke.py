"""``certfleet revoke``: revoke a certificate at the issuer that issued it.

    certfleet revoke FINGERPRINT --reason keyCompromise|superseded|cessationOfOperation|...
"""
from __future__ import annotations

import argparse
from typing import Any

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.cli.command import TIMEOUT, handles


def cmd_revoke(channel: grpc.Channel, ns: argparse.Namespace) -> int:
    r = admin_pb2_grpc.AdminServiceStub(channel).RevokeCertificate(
        admin_pb2.RevokeCertificateRequest(fingerprint_prefix=ns.fingerprint, reason=ns.reason), timeout=TIMEOUT)
    print(f"revoked {r.fingerprint_sha256} through issuer {r.issuer} ({ns.reason})")
    return 0


def register(subparsers: Any) -> None:
    """Add ``revoke`` to the ``certfleet`` parser's subcommands."""
    s = subparsers.add_parser("revoke", help="revoke a certificate at its issuer")
    s.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix")
    s.add_argument("--reason", required=True, help="RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, ...")
    handles(s, cmd_revoke)
