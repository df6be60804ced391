"""``certfleet``: the admin CLI, a client of the collector's admin API over mutual TLS.

The composition root of the CLI: builds the parser from the command modules (each adds its
commands with ``register(subparsers)``, in the order of :data:`COMMANDS`, which is the order of
``certfleet --help``), loads the client config, opens the channel and runs the handler the
arguments chose (collector/cli/command.py: ``(channel, ns) -> exit code``).

Exit codes: the handler's (0 success, 1 the thing checked or waited for is not good); 2 for a
usage or input error (argparse, or a :class:`~collector.errors.CollectorError`, message on
standard error); 1 when a call to the collector fails; 130 on Ctrl-C.

A machine format (``--format json|csv``) is written only when it is complete
(collector/cli/output.py): a command that fails half-way leaves nothing on standard output,
only its message on standard error and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType

import grpc

from collector import __version__
from collector.cli import (
    agents,
    approvals,
    audit,
    certs,
    jobs,
    names,
    netscan,
    notify,
    owners,
    policy,
    renew,
    reports,
    revoke,
    tokens,
)
from collector.cli.command import Handler
from collector.cli.connect import open_channel, rpc_error_text
from collector.cli.output import complete_output
from collector.config.client import load_client_config
from collector.reports.text import TerminalSafeStream
from collector.errors import CollectorError

#: the command modules, in the order their commands are listed in ``certfleet --help``
COMMANDS: tuple[ModuleType, ...] = (
    tokens,      # token create
    certs,       # certs list|show
    agents,      # agents list|resync|revoke
    renew,       # renew
    jobs,        # jobs list|show|retry|cancel
    revoke,      # revoke
    audit,       # audit verify|export|list
    owners,      # owners ..., assign, unassign
    policy,      # policy show|set, violations list, exceptions add|list|remove
    notify,      # notify run|deliveries
    reports,     # report NAME
    netscan,     # netscan start|list|show, stale
    names,       # names grant|allow|list|revoke|check|propose|adopt (issue 11)
    approvals,   # approvals list|show|approve|deny (issue 11)
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="certfleet", description="certfleet admin CLI")
    p.add_argument("--version", action="version", version=f"certfleet {__version__}")
    p.add_argument("--config", help="client config (default: $CERTFLEET_CONFIG)")
    sub = p.add_subparsers(dest="group", required=True)
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    # agent-supplied text reaches the admin's terminal: every control character is escaped on the way
    # out (collector/reports/text.py terminal_safe), whatever command prints it
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TerminalSafeStream(out), TerminalSafeStream(err)
    try:
        return _run(ns)
    finally:
        sys.stdout, sys.stderr = out, err


def _run(ns: argparse.Namespace) -> int:
    handler: Handler = ns.func
    collector = ""
    try:
        cfg = load_client_config(ns.config)
        collector = cfg.collector
        with open_channel(cfg) as channel, complete_output(getattr(ns, "format", None)):
            return handler(channel, ns)
    except CollectorError as e:
        print(f"certfleet: {e}", file=sys.stderr)
        return 2
    except grpc.RpcError as e:
        print(f"certfleet: {rpc_error_text(e, collector)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
