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
import errno
import json
import os
import re
import socket
import ssl
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

from agent.errors import AgentError, ConfigError, IdentityError, PasswordUnavailable
from agent.transport.identity import ACCEPTED, CALL_FAILED, NO_ANSWER, REFUSED
from agent.transport.identity import check_identity as collector_check

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
    from agent.config import load_config

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
    from agent.scan.scanner import Scanner

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
    from agent.identity import NOT_ENROLLED, identity_dir, load_identity

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


# --------------------------------------------------------------------------- collector


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {endpoint!r}")
    return host.strip("[]"), int(port)


def check_collector(ident, timeout: float = DEFAULT_TIMEOUT):  # noqa: ANN001, ANN201 - (CheckResult, server cert DER | None)
    """DNS, TCP, mutual TLS against the pinned CA, then the collector's own identity check."""
    name = "collector"
    try:
        host, port = split_endpoint(ident.endpoint)
    except ValueError as e:
        return CheckResult(name, FAIL, f"the identity names no usable collector endpoint: {e}",
                           f"enroll again (the endpoint is kept in {ident.meta_path})"), None
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"

    # 1. DNS
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)   # a name that does not resolve is told apart
    except socket.gaierror as e:
        return CheckResult(name, FAIL, f"cannot resolve {host}: {e.strerror}",
                           "a DNS problem: check the name and /etc/resolv.conf (the endpoint comes from "
                           f"enrollment, in {ident.meta_path})"), None
    # 2. TCP
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return CheckResult(name, FAIL, f"connection refused by {where}: nothing listens there",
                           "is certfleet-collector running, and is this its `listen` (or `advertise`) address?"), None
    except (socket.timeout, TimeoutError):
        return CheckResult(name, FAIL, f"no answer from {where} within {timeout:g} s",
                           "a firewall drops the packets, or the host is down; the agent only dials out, "
                           f"to port {port}"), None
    except OSError as e:
        return CheckResult(name, FAIL, f"cannot connect to {where}: {e.strerror or e}",
                           "check routing and firewalls between this host and the collector"), None
    address = sock.getpeername()[0]

    # 3. TLS, both ways
    with sock:
        try:
            ctx = _tls_context(ident)
        except OSError as e:
            return CheckResult(name, FAIL, f"cannot read the agent's key or certificate: {e.strerror or e}",
                               "run doctor as root, as the service runs"), None
        except ssl.SSLError as e:
            return CheckResult(name, FAIL, f"the agent's key or certificate cannot be used: {e.reason or e}",
                               "enroll again with --force"), None
        sock.settimeout(timeout)
        try:
            tls = ctx.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as e:
            return _verify_failed(e, host, port, where, timeout), _unverified_server_cert(host, port, timeout)
        except (socket.timeout, TimeoutError):
            return CheckResult(name, FAIL, f"{where} accepted the connection but the TLS handshake timed out "
                                           f"({timeout:g} s)", "is it the collector's mutual-TLS `listen` port?"), None
        except ssl.SSLError as e:
            return _handshake_refused(e, where), _unverified_server_cert(host, port, timeout)
        except OSError as e:
            return CheckResult(name, FAIL, f"the TLS handshake with {where} failed: {e.strerror or e}",
                               "is it the collector's mutual-TLS `listen` port?"), None
        with tls:
            server_der = tls.getpeercert(binary_form=True)
            if tls.selected_alpn_protocol() != "h2":
                return CheckResult(name, FAIL, f"{where} speaks TLS but not HTTP/2: not a gRPC server",
                                   "is it the collector's `listen` port?"), server_der
            refused = _client_cert_refused(tls, where)
            if refused is not None:
                return refused, server_der

    # 4. the collector's own check of this identity (registry: enrolled, not revoked, current)
    return _identity_accepted(ident, where, address, timeout), server_der


def _tls_context(ident) -> ssl.SSLContext:  # noqa: ANN001
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ident.ca_pem.decode("ascii", "replace"))
    ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
    ctx.set_alpn_protocols(["h2"])
    return ctx


_NOT_YET_VALID, _EXPIRED, _HOSTNAME_MISMATCH = 9, 10, 62


def _verify_failed(e: ssl.SSLCertVerificationError, host: str, port: int, where: str, timeout: float) -> CheckResult:
    code = getattr(e, "verify_code", None)
    if code == _NOT_YET_VALID:
        return CheckResult("collector", FAIL, f"the collector's certificate at {where} is not valid yet by this "
                                              "host's clock", "this host's clock is behind: synchronise it (NTP)")
    if code == _EXPIRED:
        return CheckResult("collector", FAIL, f"the collector's certificate at {where} has expired by this host's "
                                              "clock", "check this host's clock; a running collector renews its "
                                                       "certificate 30 days before expiry (restart it)")
    if code == _HOSTNAME_MISMATCH:
        return CheckResult("collector", FAIL, f"the collector's certificate does not name {host}",
                           f"add {host} to server_names in collector.toml (the collector reissues its certificate "
                           "on restart), or enroll again through a name it has")
    return CheckResult("collector", FAIL,
                       f"the server at {where} does not present a certificate of the collector CA this agent enrolled "
                       f"with ({getattr(e, 'verify_message', '') or e.reason})",
                       "another server answers at that address, or the collector's CA was replaced: enroll again")


def _handshake_refused(e: ssl.SSLError, where: str) -> CheckResult:
    reason = (e.reason or str(e)).lower()
    if "alert" in reason:
        return CheckResult("collector", FAIL, f"the collector at {where} refused this agent's TLS certificate "
                                              f"({e.reason})",
                           "the certificate is not from the collector's CA or has expired there: enroll again")
    if "wrong_version" in reason or "record" in reason or "packet" in reason:
        return CheckResult("collector", FAIL, f"{where} does not speak TLS ({e.reason})",
                           "is it the collector's mutual-TLS `listen` port?")
    return CheckResult("collector", FAIL, f"the TLS handshake with {where} failed: {e.reason or e}",
                       "is it the collector's mutual-TLS `listen` port?")


# HTTP/2: the client connection preface and an empty SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _client_cert_refused(tls: ssl.SSLSocket, where: str) -> CheckResult | None:
    """With TLS 1.3 a server refuses a client certificate after the handshake: read and see."""
    try:
        tls.sendall(_H2_PREFACE)
        head = tls.recv(9)
    except ssl.SSLError as e:
        return CheckResult("collector", FAIL, f"the collector at {where} refused this agent's TLS certificate "
                                              f"({e.reason or e})",
                           "the certificate is not from the collector's CA or has expired there: enroll again")
    except (socket.timeout, TimeoutError):
        return None   # nothing said yet; the gRPC call below decides
    except OSError as e:
        return CheckResult("collector", FAIL, f"the collector at {where} dropped the connection after the "
                                              f"handshake ({e.strerror or e})", "enroll again")
    if not head:
        return CheckResult("collector", FAIL, f"the collector at {where} closed the connection after the TLS "
                                              "handshake: it refused this agent's certificate", "enroll again")
    return None


def _identity_accepted(ident, where: str, address: str, timeout: float) -> CheckResult:  # noqa: ANN001
    check = collector_check(ident, timeout)
    if check.verdict == ACCEPTED:
        return CheckResult("collector", OK, f"{where} ({address}) reachable; mutual TLS works and the "
                                            f"collector accepts agent {ident.agent_id}")
    if check.verdict == REFUSED:
        return CheckResult("collector", FAIL, f"the collector refused agent {ident.agent_id}: {check.details}",
                           "the agent was revoked or is unknown to this collector's registry: create a token "
                           "and enroll again with --force")
    if check.verdict == NO_ANSWER:
        return CheckResult("collector", FAIL, f"the collector at {where} did not answer a call within "
                                              f"{timeout:g} s", "is it overloaded, or its database slow?")
    if check.verdict == CALL_FAILED:
        return CheckResult("collector", FAIL, f"a call to the collector at {where} failed: "
                                              f"{check.code}: {check.details}", "see the collector's log")
    return CheckResult("collector", WARN, f"the collector at {where} stored an empty report; expected a refusal",
                       "is this a certfleet collector?")


def _unverified_server_cert(host: str, port: int, timeout: float) -> bytes | None:
    """The collector's certificate without trusting it (for the clock check only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None


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


def _ago(delta: dt.timedelta) -> str:
    s = int(abs(delta.total_seconds()))
    if s >= 2 * 86400:
        return f"{s // 86400} days"
    if s >= 2 * 3600:
        return f"{s // 3600} hours"
    if s >= 120:
        return f"{s // 60} minutes"
    return f"{s} s"
