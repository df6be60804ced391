"""The doctor's checks of this host: configuration, stores, data directory, identity, clock.

Each returns a :class:`CheckResult` (``ok``, ``warn`` or ``fail``, what was found, what to do);
all take the current time as an argument and touch nothing but local files. The check of the
collector itself, over the network, is :mod:`agent.cli.doctor_collector`; the command that
runs them all is :mod:`agent.cli.doctor`.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.config import load_config
from agent.errors import AgentError, ConfigError, IdentityError, PasswordUnavailable
from agent.identity import NOT_ENROLLED, identity_dir, load_identity
from agent.scan.scanner import Scanner

__all__ = ["CheckResult", "OK", "WARN", "FAIL", "check_config", "check_stores", "check_data_dir", "check_identity",
           "check_clock", "DEFAULT_TIMEOUT"]

OK, WARN, FAIL = "ok", "warn", "fail"

# The collector backdates every certificate it issues by this much (collector/pki.py
# CLOCK_SKEW), so that a host a little behind can use it at once.
ISSUE_BACKDATE = dt.timedelta(minutes=5)
SKEW_WARN = dt.timedelta(minutes=2)          # skew at issuance worth mentioning
EXPIRY_WARN = dt.timedelta(days=7)           # the agent renews before this; past it, something is wrong
DEFAULT_TIMEOUT = 5.0

_STORE_FAIL_REASONS = {"unreadable", "wrong_password", "no_password", "symlink_loop"}
_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check. ``message`` and ``hint`` never contain a secret."""

    check: str
    status: str            # ok, warn, fail
    message: str
    hint: str = ""
    line: int | None = None   # config errors: the line in the file, when known

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        if self.line is None:
            del d["line"]
        return d


# --------------------------------------------------------------------------- config


def check_config(path: str | os.PathLike[str]):  # noqa: ANN201 - (CheckResult, AgentConfig | None)
    """Load the configuration; on error name the line. Returns (result, config or None)."""
    p = Path(path).expanduser().absolute()
    try:
        config = load_config(p)
    except ConfigError as e:
        msg = str(e)
        line = _error_line(msg, p)
        if "cannot be read" in msg or "does not exist" in msg:
            hint = "give the path of the agent's config (the package's: /etc/certfleet/agent.toml); it is " \
                   "readable by root only: run doctor as root (sudo), as the service runs"
        else:
            hint = (f"fix line {line} of {p}" if line else f"fix {p}") + \
                "; `certfleet-agent scan --config FILE` shows the same error"
        return CheckResult("config", FAIL, msg, hint, line), None
    n = len(config.stores)
    msg = (f"{p}: {n} store{'s' if n != 1 else ''}, {len(config.reload_actions)} reload action(s), "
           f"data_dir {config.data_dir}")
    try:
        st = os.stat(p)
    except OSError:  # pragma: no cover - it was just read
        return CheckResult("config", OK, msg), config
    mode = stat.S_IMODE(st.st_mode)
    if os.name == "posix" and mode & 0o002:
        return CheckResult(
            "config", FAIL, f"{p} can be changed by every user (mode {mode:04o}); the agent runs its reload "
            "commands as root", f"chmod 600 {p}", None), config
    if os.name == "posix" and mode & 0o020:
        return CheckResult(
            "config", WARN, f"{msg}; but its group can change it (mode {mode:04o}) and the agent runs its "
            "reload commands as root", f"chmod g-w {p}", None), config
    if n == 0:
        return CheckResult("config", WARN, f"{msg}; no [[store]] is configured, so the agent reports nothing",
                           f"add [[store]] tables to {p}"), config
    return CheckResult("config", OK, msg), config


def _error_line(message: str, path: Path) -> int | None:
    m = _TOML_LINE.search(message)
    if m:
        return int(m.group(1))
    m = re.match(re.escape(str(path)) + r":(\d+):", message)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- stores


@dataclass
class _Tally:
    files: int = 0
    certs: int = 0
    problems: list = field(default_factory=list)


def check_stores(config) -> list[CheckResult]:  # noqa: ANN001 - AgentConfig
    """One result per store: password source, matching files, every file read by the real scanner."""
    tally = {s.name: _Tally() for s in config.stores}
    try:
        for fs in Scanner(config).scan(force=True):
            t = tally.setdefault(fs.store_name, _Tally())
            t.files += fs.signature is not None      # directories that cannot be walked have none
            t.certs += len(fs.entries)
            t.problems.extend(fs.problems)
    except AgentError as e:   # the scanner reports per file; this is a safety net
        return [CheckResult("store", FAIL, f"the scan stopped: {e}")]
    return [_store_result(s, tally[s.name].files, tally[s.name].certs, tally[s.name].problems) for s in config.stores]


def _store_result(store, files: int, certs: int, problems: list) -> CheckResult:  # noqa: ANN001
    name = f"store {store.name!r}"
    try:
        store.read_password()
    except PasswordUnavailable as e:
        src = ("password_file" if store.password_file else "password_env" if store.password_env else "password")
        return CheckResult("store", FAIL, e.message,
                           f"check {src} of [[store]] {store.name!r}; the service reads it as root "
                           "(password_env: set it in /etc/certfleet/agent.env)")
    if not problems and files == 0:
        return CheckResult("store", WARN, f"{name}: no file matches {', '.join(store.paths)}",
                           "check the paths; run doctor as root, as the service runs, to see every file")
    serious = [p for p in problems if p.reason in _STORE_FAIL_REASONS or _missing(p)]
    summary = f"{name}: {files} file{'s' if files != 1 else ''}, {certs} certificate{'s' if certs != 1 else ''}"
    if not problems:
        return CheckResult("store", OK, summary)
    shown = "; ".join(f"{p.path}{f' ({p.alias})' if p.alias else ''}: {p.message}" for p in (serious or problems)[:3])
    more = len(serious or problems) - 3
    detail = shown + (f"; and {more} more" if more > 0 else "")
    if serious:
        reasons = {p.reason for p in serious}
        if "wrong_password" in reasons or "no_password" in reasons:
            hint = f"check the password source of [[store]] {store.name!r}"
        elif any(_missing(p) for p in serious):
            hint = "fix the paths in the config or put the file in place"
        else:
            hint = ("run doctor as root (the service runs as root); under systemd, stores below /home "
                    "need ProtectHome=read-only in a drop-in")
        return CheckResult("store", FAIL, f"{summary}; {len(serious)} cannot be read: {detail}", hint)
    return CheckResult("store", WARN, f"{summary}; {len(problems)} problem(s): {detail}",
                       "these files are reported to the collector as scan errors; fix or exclude them")


def _missing(problem) -> bool:  # noqa: ANN001
    return problem.reason == "vanished" and "does not exist" in problem.message


# --------------------------------------------------------------------------- data_dir


def check_data_dir(path: Path) -> CheckResult:
    """The data directory exists (or can be made), is writable for real, and is private."""
    path = Path(path)
    if not path.exists():
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if _writable(parent) is None:
            return CheckResult("data_dir", WARN, f"{path} does not exist yet; the agent makes it (mode 0700) "
                                                 "on enrollment", "")
        return CheckResult("data_dir", FAIL, f"{path} does not exist and {parent} is not writable",
                           f"mkdir -m 700 {path}")
    if not path.is_dir():
        return CheckResult("data_dir", FAIL, f"{path} is not a directory", "point data_dir at a directory")
    problem = _writable(path)
    if problem is not None:
        hint = "chown it to the user the agent runs as, mode 0700"
        if problem.errno == errno.EROFS:
            hint = ("it is on a read-only mount; under systemd (ProtectSystem=strict) the agent may write only "
                    "/var/lib/certfleet/agent and the ReadWritePaths= of its drop-in")
        return CheckResult("data_dir", FAIL, f"{path} is not writable: {problem.strerror or problem}", hint)
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        return CheckResult("data_dir", WARN, f"{path} is writable, but open to others (mode {mode:04o}); it holds "
                                             "the agent's private key", f"chmod 700 {path}")
    return CheckResult("data_dir", OK, f"{path} is writable")


def _writable(directory: Path) -> OSError | None:
    try:
        fd, name = tempfile.mkstemp(prefix=".doctor-", dir=directory)
    except OSError as e:
        return e
    os.close(fd)
    os.unlink(name)
    return None


# --------------------------------------------------------------------------- identity


def check_identity(data_dir: Path, now: dt.datetime):  # noqa: ANN201 - (CheckResult, AgentIdentity | None)
    """The enrolled identity: present, whole, valid at ``now``, renewed in time."""
    directory = identity_dir(data_dir)
    try:
        ident = load_identity(directory)
    except IdentityError as e:
        if str(e) == NOT_ENROLLED:
            return CheckResult("identity", FAIL, f"this agent is not enrolled (no identity in {directory})",
                               "certfleet token create (on an admin host), then certfleet-agent enroll --config FILE "
                               "--collector HOST:PORT --token TOKEN --ca-fingerprint SHA256"), None
        return CheckResult("identity", FAIL, str(e), "enroll again: certfleet-agent enroll ... --force"), None
    except OSError as e:
        return CheckResult("identity", FAIL, f"{directory}: cannot read: {e.strerror or e}",
                           "run doctor as root, as the service runs"), None
    who = f"agent {ident.agent_id} (collector {ident.endpoint})"
    if ident.not_after <= now:
        return CheckResult(
            "identity", FAIL, f"{who}: the identity certificate expired {ident.not_after.isoformat()} "
            f"({_ago(now - ident.not_after)} ago)",
            "the collector refuses it: create a token (certfleet token create) and enroll again with --force; "
            "if the date looks wrong, check this host's clock"), ident
    if ident.not_before > now:
        return CheckResult(
            "identity", FAIL, f"{who}: the identity certificate is valid only from {ident.not_before.isoformat()}, "
            f"{_ago(ident.not_before - now)} after this host's time",
            "this host's clock is behind: synchronise it (NTP)"), ident
    left = ident.not_after - now
    if left < EXPIRY_WARN:
        return CheckResult(
            "identity", WARN, f"{who}: the identity certificate expires {ident.not_after.isoformat()} (in {_ago(left)}) "
            "and has not been renewed",
            "the running agent renews it at two thirds of its lifetime: is certfleet-agent.service running, "
            "and can it reach the collector?"), ident
    return CheckResult("identity", OK, f"{who}: valid until {ident.not_after.isoformat()} ({_ago(left)} left)"), ident


# --------------------------------------------------------------------------- clock


def check_clock(ident, server_cert_der: bytes | None, now: dt.datetime) -> CheckResult:  # noqa: ANN001
    """What the certificates say about this host's clock (see the module doc for the limits)."""
    from cryptography import x509

    limits = ("(from certificates only: a clock more than 5 minutes behind, or past an expiry, shows; "
              "smaller skews do not: keep NTP running)")
    # A certificate the collector issued at its time T says not_before = T - 5 min. If that is
    # after this host's now, the collector's clock is now at least T, so this host is behind by
    # at least T - now.
    behind: list[tuple[dt.timedelta, str, dt.datetime]] = []
    if server_cert_der:
        try:
            server = x509.load_der_x509_certificate(server_cert_der)
        except ValueError:
            server = None
        if server is not None:
            if server.not_valid_before_utc > now:
                issued = server.not_valid_before_utc + ISSUE_BACKDATE
                behind.append((issued - now, "its TLS certificate", issued))
            elif server.not_valid_after_utc < now:
                return CheckResult("clock", FAIL, "by this host's clock the collector's TLS certificate expired "
                                                  f"{server.not_valid_after_utc.isoformat()}",
                                   "if that date is in the future for the collector, this host's clock is ahead: "
                                   "synchronise it (NTP)")
    if ident is not None and ident.not_before > now:
        issued = ident.not_before + ISSUE_BACKDATE
        behind.append((issued - now, "this agent's identity certificate", issued))
    if behind:
        gap, what, issued = max(behind)
        return CheckResult("clock", FAIL, f"this host's clock is behind the collector's by at least {_ago(gap)}: "
                                          f"the collector issued {what} at {issued.isoformat()} by its clock, "
                                          f"and this host's time is {now.isoformat()}",
                           "synchronise the clock (NTP: timedatectl set-ntp true, or chrony)")
    if ident is None:
        return CheckResult("clock", OK, f"nothing wrong seen {limits}")
    issued_local = _issued_locally(ident)
    if issued_local is not None:
        collector_at_issue = ident.not_before + ISSUE_BACKDATE
        skew = issued_local - collector_at_issue
        if abs(skew) > SKEW_WARN:
            direction = "ahead of" if skew > dt.timedelta(0) else "behind"
            return CheckResult("clock", WARN, f"when the identity was last issued ({collector_at_issue.isoformat()}), "
                                              f"this host's clock was {_ago(abs(skew))} {direction} the collector's",
                               "synchronise the clock (NTP: timedatectl set-ntp true, or chrony)")
        return CheckResult("clock", OK, f"at the last issue of the identity this host's clock was within "
                                        f"{_ago(SKEW_WARN)} of the collector's; nothing wrong seen now {limits}")
    return CheckResult("clock", OK, f"nothing wrong seen {limits}")


def _issued_locally(ident) -> dt.datetime | None:  # noqa: ANN001
    """This host's time when it stored the current identity certificate (collector.json)."""
    try:
        meta = json.loads(Path(ident.meta_path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    value = meta.get("renewed_at") or meta.get("enrolled_at") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when


def _ago(delta: dt.timedelta) -> str:
    s = int(abs(delta.total_seconds()))
    if s >= 2 * 86400:
        return f"{s // 86400} days"
    if s >= 2 * 3600:
        return f"{s // 3600} hours"
    if s >= 120:
        return f"{s // 60} minutes"
    return f"{s} s"
