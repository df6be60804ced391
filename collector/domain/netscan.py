"""Network scan jobs: the collector's decisions, as pure functions of facts and an injected clock.

An admin gives an agent a scan (``certfleet netscan start``): address targets x ports, a
rate limit, a per-handshake timeout, how many handshakes in flight. Here:

- :func:`plan_scan` checks a request and fills the defaults: every target parsed
  ("10.0.0.5", "10.0.0.0/28", "10.0.0.1-10.0.0.20", IPv4 or IPv6), addresses and
  address x port pairs counted against the limits, STARTTLS protocols checked;
- :func:`progress_state` decides what a progress report from the agent does to a scan;
- :func:`overdue` decides when a scan the agent no longer works on has failed.

States: ``queued`` (stored, the agent has not been sent it) -> ``sent`` (on the agent's
command stream) -> ``running`` (the agent reported progress) -> ``done`` | ``failed``.
``done`` and ``failed`` are final. A queued scan waits for its agent to connect for
:data:`QUEUE_TIMEOUT`; a sent one for its first answer for :data:`ANSWER_TIMEOUT`
(restarted when it is sent again after a reconnect); a running one fails after
:data:`PROGRESS_TIMEOUT` without progress (the agent reports every few seconds while
it scans).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from certfleet.ranges import refusal
from collector.errors import InvalidInput, PermissionDenied

QUEUED, SENT, RUNNING, DONE, FAILED = "queued", "sent", "running", "done", "failed"
STATES = (QUEUED, SENT, RUNNING, DONE, FAILED)
FINAL = frozenset({DONE, FAILED})
UNFINISHED = (QUEUED, SENT, RUNNING)

DEFAULT_RATE = 50.0             # new connections per second
DEFAULT_TIMEOUT = 3.0           # seconds per connection + handshake
DEFAULT_CONCURRENCY = 64
MAX_RATE = 5000.0
MAX_TIMEOUT = 60.0
MAX_CONCURRENCY = 1024
#: addresses in one scan (a /16); the agent is told so it refuses anything larger too
MAX_ADDRESSES = 65536
#: address x port pairs in one scan
MAX_PROBES = 1_048_576
MAX_PORTS = 1024
MAX_SNI_NAMES = 32
STARTTLS_PROTOCOLS = ("smtp", "imap", "pop3")
#: STARTTLS for the usual mail ports when the request says nothing about them
DEFAULT_STARTTLS = {25: "smtp", 587: "smtp", 143: "imap", 110: "pop3"}

QUEUE_TIMEOUT = dt.timedelta(hours=1)
ANSWER_TIMEOUT = dt.timedelta(minutes=5)
PROGRESS_TIMEOUT = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Target:
    text: str                   # as given, normalised ("10.0.0.0/28")
    first: ipaddress.IPv4Address | ipaddress.IPv6Address
    last: ipaddress.IPv4Address | ipaddress.IPv6Address

    @property
    def count(self) -> int:
        return int(self.last) - int(self.first) + 1

    def contains(self, address: str) -> bool:
        try:
            a = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        return a.version == self.first.version and self.first <= a <= self.last


@dataclass(frozen=True)
class ScanPlan:
    targets: tuple[str, ...]
    ports: tuple[int, ...]
    rate_per_second: float
    timeout_seconds: float
    concurrency: int
    starttls: dict[int, str] = field(default_factory=dict)
    sni_names: tuple[str, ...] = ()
    addresses: int = 0
    targets_total: int = 0      # address x port pairs


def parse_target(text: str) -> Target:
    """One target: an address, a CIDR network or a first-last range of one IP version."""
    s = (text or "").strip()
    if not s:
        raise InvalidInput("an empty scan target; give an address, a network (10.0.0.0/28) or a range (10.0.0.1-10.0.0.20)")
    try:
        if "/" in s:
            try:
                net = ipaddress.ip_network(s, strict=True)
            except ValueError as e:
                if "has host bits set" in str(e):
                    net = ipaddress.ip_network(s, strict=False)
                    raise InvalidInput(f"scan target {s!r} has host bits set; did you mean {net}?") from None
                raise
            return Target(str(net), net.network_address, net.broadcast_address)
        if "-" in s:
            lo_s, _, hi_s = s.partition("-")
            lo, hi = ipaddress.ip_address(lo_s.strip()), ipaddress.ip_address(hi_s.strip())
            if lo.version != hi.version:
                raise InvalidInput(f"scan target {s!r} mixes IPv4 and IPv6")
            if hi < lo:
                raise InvalidInput(f"scan target {s!r} ends before it starts")
            return Target(f"{lo}-{hi}", lo, hi)
        a = ipaddress.ip_address(s)
        return Target(str(a), a, a)
    except ValueError as e:
        raise InvalidInput(f"scan target {s!r} is not an address, a network or a range: {e}") from None


def _port(p: int) -> int:
    if not isinstance(p, int) or not 1 <= p <= 65535:
        raise InvalidInput(f"port {p} is not between 1 and 65535")
    return p


def _bounded(value: float, default: float, low_exclusive: float, high: float, what: str) -> float:
    if value == 0:
        return default
    if not (value > low_exclusive and value <= high):
        raise InvalidInput(f"{what} must be more than {low_exclusive:g} and at most {high:g}, not {value:g}")
    return float(value)


def check_allowed(targets: Sequence[Target], allowed: Sequence[Any]) -> None:
    """PermissionDenied unless every target is inside ``[netscan] allowed_ranges`` (certfleet/ranges.py)."""
    if not allowed:
        raise PermissionDenied("network scans are not enabled on this collector ([netscan] allowed_ranges is empty)")
    for t in targets:
        why = refusal(t.first, t.last, allowed)
        if why:
            raise PermissionDenied(f"target {t.text}: {why} ([netscan] allowed_ranges)")


def plan_scan(targets: Sequence[str], ports: Sequence[int], rate_per_second: float = 0, timeout_seconds: float = 0,
              concurrency: int = 0, starttls: Mapping[int, str] | None = None,
              sni_names: Sequence[str] = (), allowed: Sequence[Any] | None = None) -> ScanPlan:
    """Check a scan request and fill its defaults; InvalidInput names what is wrong. With ``allowed``
    (the collector's ``[netscan] allowed_ranges``) a target outside is PermissionDenied."""
    if not targets:
        raise InvalidInput("a network scan needs targets (--targets 10.0.0.0/28,10.0.1.5)")
    if not ports:
        raise InvalidInput("a network scan needs ports (--ports 443,8443)")
    parsed = [parse_target(t) for t in targets]
    seen: list[Target] = []
    for t in parsed:
        for o in seen:
            if t.first.version == o.first.version and t.first <= o.last and o.first <= t.last:
                raise InvalidInput(f"scan targets {o.text} and {t.text} overlap; give each address once")
        seen.append(t)
    addresses = sum(t.count for t in parsed)
    if addresses > MAX_ADDRESSES:
        raise InvalidInput(f"the targets hold {addresses} addresses; one scan covers at most {MAX_ADDRESSES} "
                           "(a /16): split it")
    uniq_ports = sorted({_port(int(p)) for p in ports})
    if len(uniq_ports) > MAX_PORTS:
        raise InvalidInput(f"{len(uniq_ports)} ports; one scan probes at most {MAX_PORTS}")
    total = addresses * len(uniq_ports)
    if total > MAX_PROBES:
        raise InvalidInput(f"{addresses} addresses x {len(uniq_ports)} ports = {total} probes; one scan makes at most "
                           f"{MAX_PROBES}: split it")
    rate = _bounded(rate_per_second, DEFAULT_RATE, 0, MAX_RATE, "the rate (connections per second)")
    timeout = _bounded(timeout_seconds, DEFAULT_TIMEOUT, 0, MAX_TIMEOUT, "the timeout (seconds per handshake)")
    if concurrency == 0:
        conc = DEFAULT_CONCURRENCY
    elif not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InvalidInput(f"concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}")
    else:
        conc = int(concurrency)
    tls: dict[int, str] = {p: proto for p, proto in DEFAULT_STARTTLS.items() if p in uniq_ports}
    for p, proto in (starttls or {}).items():
        name = (proto or "").strip().lower()
        if name not in STARTTLS_PROTOCOLS:
            raise InvalidInput(f"STARTTLS protocol {proto!r} for port {p} is not one of {', '.join(STARTTLS_PROTOCOLS)}")
        if int(p) not in uniq_ports:
            raise InvalidInput(f"STARTTLS is given for port {p}, which the scan does not probe (ports: "
                               f"{', '.join(map(str, uniq_ports))})")
        tls[int(p)] = name
    names = sni_list(sni_names)
    if allowed is not None:
        check_allowed(parsed, allowed)
    return ScanPlan(targets=tuple(t.text for t in parsed), ports=tuple(uniq_ports), rate_per_second=rate,
                    timeout_seconds=timeout, concurrency=conc, starttls=tls, sni_names=names,
                    addresses=addresses, targets_total=total)


def sni_list(names: Sequence[str], limit: int = MAX_SNI_NAMES) -> tuple[str, ...]:
    """Server names worth sending: lower-case DNS names, no wildcards or addresses, each once, at most ``limit``."""
    out: list[str] = []
    for n in names:
        n = (n or "").strip().lower().rstrip(".")
        if not n or n.startswith("*") or " " in n or n in out:
            continue
        try:
            ipaddress.ip_address(n)
            continue
        except ValueError:
            pass
        out.append(n)
        if len(out) >= limit:
            break
    return tuple(out)


def estimated_duration(targets_total: int, rate_per_second: float, timeout_seconds: float) -> dt.timedelta:
    """How long a scan should take at its rate (plus one timeout for the last handshakes)."""
    return dt.timedelta(seconds=targets_total / max(rate_per_second, 0.001) + timeout_seconds)


# -- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    state: str                  # running, done, failed
    targets_total: int = 0
    probed: int = 0
    tls_found: int = 0
    errors: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Change:
    state: str
    targets_total: int
    probed: int
    tls_found: int
    errors: int
    reason: str
    finished: bool              # the scan has just become final


def progress_state(current: str, counters: tuple[int, int, int, int], reason: str, p: Progress) -> Change | None:
    """What an agent's progress report does to a scan in ``current`` with ``counters``
    (targets_total, probed, tls_found, errors); None when it changes nothing (a final scan
    keeps its outcome: a repeated final report or a late running one is harmless)."""
    if p.state not in (RUNNING, DONE, FAILED):
        raise InvalidInput(f"unknown network scan progress state {p.state!r} (running, done, failed)")
    if current in FINAL:
        return None
    total, probed, found, errs = counters
    # counters only grow (reports may overtake each other on the way)
    final = p.state in FINAL
    return Change(
        state=p.state,
        targets_total=p.targets_total or total,
        probed=max(p.probed, probed), tls_found=max(p.tls_found, found), errors=max(p.errors, errs),
        reason=p.reason or (reason if not final else ("scan finished" if p.state == DONE else "the agent gave up")),
        finished=final,
    )


def overdue(state: str, created_at: dt.datetime, updated_at: dt.datetime, now: dt.datetime) -> str | None:
    """Why an unfinished scan has failed by ``now`` (None while it may still finish)."""
    if state == QUEUED and now - created_at >= QUEUE_TIMEOUT:
        return (f"the agent did not connect to take the scan within {_minutes(QUEUE_TIMEOUT)} "
                "(is it running? certfleet agents list)")
    if state == SENT and now - updated_at >= ANSWER_TIMEOUT:
        return (f"the agent did not answer within {_minutes(ANSWER_TIMEOUT)} of being sent the scan "
                "(an agent without network scanning, or it went away)")
    if state == RUNNING and now - updated_at >= PROGRESS_TIMEOUT:
        return f"no progress from the agent for {_minutes(PROGRESS_TIMEOUT)}"
    return None


def _minutes(d: dt.timedelta) -> str:
    m = int(d.total_seconds() // 60)
    return f"{m // 60} h" if m >= 60 and m % 60 == 0 else f"{m} min"
