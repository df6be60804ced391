"""``certfleet-agent``: enroll, run as a service, or show what is on this host."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import signal
import sys
import threading

from agent import __version__
from agent.errors import AgentError
from certfleet.logformat import configure

log = logging.getLogger("certfleet.agent")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _setup_logging(verbose: bool, quiet: bool = False, fmt: str = "plain") -> None:
    # certfleet/logformat.py: plain text (the default) or one JSON object per line
    configure(fmt, logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _log_format(ns: argparse.Namespace, config) -> None:  # noqa: ANN001 - an AgentConfig
    """--log-format, else [log] format: switch the service's log lines to JSON when asked."""
    fmt = getattr(ns, "log_format", None) or config.log.format
    if fmt != "plain":
        _setup_logging(ns.verbose, quiet=getattr(ns, "once", False), fmt=fmt)


# Each command imports what it runs when it runs: start-up time (``--version``, ``--help`` and ``enroll``
# need neither the scanner nor the report machinery).


def cmd_scan(ns: argparse.Namespace) -> int:
    from agent.cli.localreport import render_scan   # start-up time
    from agent.config import load_config            # start-up time

    config = load_config(ns.config)
    return render_scan(config, ns.format, sys.stdout, utcnow())


def cmd_enroll(ns: argparse.Namespace) -> int:
    import os

    from agent.cli.enroll import enroll, read_token   # start-up time
    from agent.config import load_config              # start-up time

    config = load_config(ns.config)
    token = read_token(ns.token, ns.token_file, dict(os.environ))
    ident = enroll(config, ns.collector, token, ns.ca_fingerprint, force=ns.force, timeout=ns.timeout)
    print(f"enrolled as agent {ident.agent_id}; reporting to {ident.endpoint}; identity valid until "
          f"{ident.not_after.isoformat()}")
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    from agent.config import load_config      # start-up time
    from agent.service import AgentService    # start-up time

    config = load_config(ns.config)
    _log_format(ns, config)
    service = AgentService(config)
    if ns.once:
        outcome = service.run_once(full=ns.full)
        kind = "full" if outcome.full else "delta"
        print(
            f"{kind} report {outcome.sequence} stored by the collector: {outcome.upserts} locations sent, "
            f"{outcome.removals} removed, {outcome.certificates_new} new certificates, {outcome.problems} scan errors"
        )
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.run_forever(stop, rng=random.Random())
    return 0


def cmd_exporter(ns: argparse.Namespace) -> int:
    from agent.config import load_config            # start-up time
    from agent.service import serve_exporter        # start-up time

    config = load_config(ns.config)
    _log_format(ns, config)
    listen = ns.listen or config.metrics.listen or "127.0.0.1:9793"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve_exporter(config, listen, stop, ready=lambda url: print(
        f"certfleet-agent exporter on {url}, scanning every {config.scan_interval:.0f}s", flush=True))
    return 0


def cmd_doctor(ns: argparse.Namespace) -> int:
    from agent.cli.doctor import exit_code, render, run_doctor   # start-up time

    now = utcnow()
    results = run_doctor(ns.config, now, timeout=ns.timeout)
    render(results, ns.format, sys.stdout, ns.config, now)
    return exit_code(results)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="certfleet-agent", description="certfleet agent")
    p.add_argument("--version", action="version", version=f"certfleet-agent {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="print this host's certificate inventory; needs no collector")
    s.add_argument("--config", required=True, help="agent TOML config")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_scan)

    s = sub.add_parser("enroll", help="enroll this host with a collector using a single-use token")
    s.add_argument("--config", required=True, help="agent TOML config (its data_dir receives the identity)")
    s.add_argument("--collector", required=True, metavar="HOST:PORT", help="the collector's enrollment endpoint")
    s.add_argument("--token", help="token from `certfleet token create` (visible in the process list; "
                                   "prefer --token-file or $CERTFLEET_ENROLL_TOKEN)")
    s.add_argument("--token-file", metavar="FILE", help="read the token from FILE ('-': standard input)")
    s.add_argument("--ca-fingerprint", required=True, metavar="SHA256", help="SHA-256 fingerprint of the collector CA")
    s.add_argument("--force", action="store_true", help="enroll again even if this host already has an identity")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    s.set_defaults(func=cmd_enroll)

    s = sub.add_parser("run", help="scan and report on a schedule (the service)")
    s.add_argument("--config", required=True, help="agent TOML config")
    s.add_argument("--once", action="store_true", help="one scan and report; exit 0 only once the collector stored it")
    s.add_argument("--full", action="store_true", help="send a full report rather than a delta")
    s.add_argument("--log-format", choices=("plain", "json"), default=None,
                   help="log lines as text (default) or one JSON object per line; overrides [log] format")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("exporter", help="serve this host's certificates on /metrics with no collector "
                                        "(like x509-certificate-exporter)")
    s.add_argument("--config", required=True, help="agent TOML config (its stores; [metrics] listen)")
    s.add_argument("--listen", metavar="HOST:PORT", help="default: [metrics] listen, else 127.0.0.1:9793")
    s.add_argument("--log-format", choices=("plain", "json"), default=None, help="plain (default) or json")
    s.set_defaults(func=cmd_exporter)

    s = sub.add_parser("doctor", help="check config, stores, data dir, identity, collector and clock; exit 1 on a failure")
    s.add_argument("--config", required=True, help="agent TOML config")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds for each network step (default 5)")
    s.set_defaults(func=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    # one-shot commands print their result; the service logs as it goes
    _setup_logging(ns.verbose, quiet=ns.command not in ("run", "exporter") or getattr(ns, "once", False))
    try:
        return ns.func(ns)
    except AgentError as e:
        print(f"certfleet-agent: {e}", file=sys.stderr)
        log.debug("details", exc_info=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
