"""``certfleet-agent doctor``: what is wrong with this agent, and what to do about it.

Each check returns a :class:`CheckResult`: ``ok``, ``warn`` or ``fail``, a message that
says what was found, and a hint that says what to do. The checks, in order:

``config``
    The configuration loads (TOML syntax and every key; the line is named), and only root
    can change it (the agent runs its ``[reload.*]`` commands as root).
``store``
    One result per ``[[store]]``: the password source can be read, the paths match files,
    and every file can be read and parsed (the real scanner reads them, as the service
    would). Passwords are never shown, only where they were looked for.
``data_dir``
    The data directory exists (or can be made), is a directory, is writable (a file is
    really created: a read-only mount shows up) and is private.
``identity``
    The enrolled identity is present and whole, valid now, and not close to expiring
    without having been renewed.
``collector``
    The collector of the identity, step by step, so the failing step is named: DNS,
    TCP connect (refused or timed out), TLS handshake with the agent's certificate against
    the pinned collector CA (the collector's certificate, its name, and whether the
    collector accepts the agent's certificate), then a real call that the collector answers
    only after it has checked the agent's identity against its registry (revoked or unknown
    identities are refused there). That call is an empty inventory report, which the
    collector refuses as empty after the identity check and before it stores anything.
``clock``
    What the certificates can tell about this host's clock. The wire protocol carries no
    server time, so this is indirect. It detects: a clock behind the collector's by more
    than the 5 minutes the collector backdates what it issues (a certificate it issued is
    not valid yet here), a clock past a certificate's expiry, and the skew at the last
    enrollment or renewal (the time this host recorded against the certificate's issue
    time, to within the call's duration). It cannot see a skew under about 5 minutes now,
    nor a clock running ahead that has not yet passed an expiry: keep NTP running.

All checks take the current time as an argument (an injected clock) and are plain
functions; only ``collector`` touches the network, with a short timeout.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from typing import Iterable, TextIO

from agent.cli.doctor_checks import (DEFAULT_TIMEOUT, FAIL, OK, WARN, CheckResult, check_clock, check_config,
                                     check_data_dir, check_identity, check_stores)
from agent.cli.doctor_collector import check_collector

__all__ = ["run_doctor", "render", "exit_code"]


# --------------------------------------------------------------------------- all of it


def run_doctor(config_path: str | os.PathLike[str], now: dt.datetime,
               timeout: float = DEFAULT_TIMEOUT) -> list[CheckResult]:
    """Every check, in order; later checks that need an earlier one's result are left out."""
    results: list[CheckResult] = []
    result, config = check_config(config_path)
    results.append(result)
    if config is None:
        return results
    results.extend(check_stores(config))
    results.append(check_data_dir(config.data_dir))
    result, ident = check_identity(config.data_dir, now)
    results.append(result)
    server_der = None
    if ident is not None:
        result, server_der = check_collector(ident, timeout)
        results.append(result)
    else:
        results.append(CheckResult("collector", WARN, "not checked: there is no identity to connect with",
                                   "enroll this agent first"))
    results.append(check_clock(ident, server_der, now))
    return results


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 when nothing failed, 1 otherwise."""
    return 1 if any(r.status == FAIL for r in results) else 0


def render(results: list[CheckResult], fmt: str, out: TextIO, config_path: str, now: dt.datetime) -> None:
    fails = sum(r.status == FAIL for r in results)
    warns = sum(r.status == WARN for r in results)
    if fmt == "json":
        json.dump({"config": str(config_path), "checked_at": now.isoformat(), "ok": fails == 0,
                   "failed": fails, "warnings": warns, "checks": [r.to_dict() for r in results]}, out, indent=2)
        out.write("\n")
        return
    width = max(len(r.check) for r in results)
    for r in results:
        out.write(f"{r.status.upper():<5} {r.check:<{width}}  {r.message}\n")
        if r.hint and r.status != OK:
            out.write(f"{'':<5} {'':<{width}}  -> {r.hint}\n")
    verdict = "all checks passed" if not fails and not warns else f"{fails} failed, {warns} warning(s)"
    out.write(f"\n{verdict}\n")
