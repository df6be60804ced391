"""A network scan as the collector asks it, and its plan: which address x port pairs to probe. Pure.

The collector names targets (``10.0.0.5``, ``10.0.0.0/28``, ``10.0.0.1-10.0.0.20`` or
``10.0.0.1-20``, IPv4 or IPv6) and ports (:class:`ScanRequest`). :func:`plan_scan` turns
that into probe targets, or refuses it with a reason (too many address x port pairs, a
malformed target); it does no I/O.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from agent.endpoints.starttls import PROTOCOLS, default_starttls
from agent.endpoints.survey import Target
from agent.errors import AgentError
from certfleet.ranges import refusal

__all__ = ["ScanRequest", "ScanPlan", "ScanRefused", "plan_scan", "parse_target_spec", "DEFAULT_MAX_TARGETS",
           "SCAN_ID"]

DEFAULT_MAX_TARGETS = 4096      # address x port pairs
MAX_SNI_NAMES = 16
DEFAULT_TIMEOUT = 3.0
DEFAULT_CONCURRENCY = 64
SCAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")   # fullmatch

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ScanRequest:
    """What the collector asks: probe ``targets`` x ``ports`` from this host (0 / empty: the agent's defaults)."""

    scan_id: str
    targets: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    rate_per_second: float = 0.0
    timeout_seconds: float = 0.0
    concurrency: int = 0
    sni_names: tuple[str, ...] = ()
    starttls: Mapping[int, str] = field(default_factory=dict)
    max_addresses: int = 0


class ScanRefused(AgentError):
    """The scan cannot be run as asked; the message says why (sent to the collector as the reason)."""


@dataclass(frozen=True)
class ScanPlan:
    scan_id: str
    targets: tuple[Target, ...]      # address x port, in order
    sni_names: tuple[str, ...]
    rate: float
    timeout: float
    concurrency: int
    identity: str                    # the same targets + ports give the same identity (a rescan replaces results)


def parse_target_spec(spec: str) -> tuple[Address, Address]:
    """``addr``, ``net/prefix`` or ``first-last`` (``10.0.0.1-20`` too) -> (first, last); ValueError with the reason."""
    text = spec.strip()
    if not text:
        raise ValueError("an empty target")
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{spec!r} is not an address range (address/prefix)") from None
        return net[0], net[-1]
    if "-" in text:
        a, _, b = text.partition("-")
        try:
            first = ipaddress.ip_address(a.strip())
        except ValueError:
            raise ValueError(f"{spec!r}: {a.strip()!r} is not an IP address") from None
        b = b.strip()
        try:
            last = ipaddress.ip_address(b)
        except ValueError:
            if isinstance(first, ipaddress.IPv4Address) and b.isdigit() and int(b) < 256:
                last = ipaddress.IPv4Address(int(first) & 0xFFFFFF00 | int(b))      # 10.0.0.1-20
            else:
                raise ValueError(f"{spec!r}: {b!r} is not an IP address") from None
        if first.version != last.version:
            raise ValueError(f"{spec!r}: the range mixes IPv4 and IPv6")
        if int(last) < int(first):
            raise ValueError(f"{spec!r}: the range ends before it starts")
        return first, last
    try:
        a = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise ValueError(f"{spec!r} is not an IP address, a CIDR range or a first-last range") from None
    return a, a


def _addresses(first: Address, last: Address) -> Iterator[Address]:
    cls = type(first)
    for n in range(int(first), int(last) + 1):
        yield cls(n)


def plan_scan(scan_id: str, targets: Sequence[str], ports: Sequence[int], *, rate: float = 0.0,
              timeout: float = 0.0, concurrency: int = 0, sni_names: Sequence[str] = (),
              starttls: Mapping[int, str] | None = None, max_targets: int = 0,
              agent_max_targets: int = DEFAULT_MAX_TARGETS, allowed: Sequence[Any] | None = None) -> ScanPlan:
    """The probe targets of a scan, or :class:`ScanRefused` with the reason. Pure: no I/O.

    ``max_targets`` (the command's; 0 = the agent's) limits address x port
    pairs and can only lower the agent's own limit. Ranges are counted before
    they are expanded, so a /8 is refused without being listed. ``allowed`` (the agent's
    ``[endpoints] network_scan_allowed``; None: not checked) refuses every range outside it
    (certfleet/ranges.py: loopback and link-local only when listed themselves).
    """
    if not SCAN_ID.fullmatch(scan_id or ""):
        raise ScanRefused(f"refusing a scan id that is not an id: {scan_id!r}")
    limit = min(max_targets, agent_max_targets) if max_targets else agent_max_targets
    if not targets:
        raise ScanRefused("the scan names no targets")
    clean_ports = []
    for p in ports:
        if not 1 <= int(p) <= 65535:
            raise ScanRefused(f"port {p} is not a port number (1 to 65535)")
        if int(p) not in clean_ports:
            clean_ports.append(int(p))
    if not clean_ports:
        raise ScanRefused("the scan names no ports")
    ranges = []
    count = 0
    for spec in targets:
        try:
            first, last = parse_target_spec(spec)
        except ValueError as e:
            raise ScanRefused(f"bad target: {e}") from None
        if allowed is not None:
            if not allowed:
                raise ScanRefused("this agent allows no network scans ([endpoints] network_scan_allowed is empty)")
            why = refusal(first, last, allowed)
            if why:
                raise ScanRefused(f"refused by this agent: {why} ([endpoints] network_scan_allowed)")
        ranges.append((first, last))
        count += (int(last) - int(first) + 1) * len(clean_ports)
        if count > limit:
            total = sum(int(b) - int(a) + 1 for a, b in ranges) * len(clean_ports)
            more = "" if spec == targets[-1] else " (and more)"
            raise ScanRefused(
                f"the scan asks for {total}{more} address x port pairs; this agent probes at most {limit} per scan "
                f"(split the range, or raise [endpoints] network_scan_max_targets on the agent)"
            )
    st = dict(starttls or {})
    for port, proto in st.items():
        if proto and proto not in PROTOCOLS:
            raise ScanRefused(f"port {port}: unknown STARTTLS protocol {proto!r} (known: {', '.join(PROTOCOLS)})")
    seen: set[Address] = set()
    out: list[Target] = []
    for first, last in ranges:
        for addr in _addresses(first, last):
            if addr in seen:
                continue
            seen.add(addr)
            for port in clean_ports:
                out.append(Target(str(addr), port, "", default_starttls(port, st)))
    if timeout and not 0 < timeout <= 120:
        raise ScanRefused(f"timeout {timeout:g} s is out of range (more than 0, at most 120 s)")
    if rate < 0 or rate != rate:
        raise ScanRefused(f"rate {rate!r} is not a number of connections per second")
    names = tuple(dict.fromkeys(n.strip().lower() for n in sni_names if n and n.strip() and not n.startswith("*")))
    identity = hashlib.sha256(json.dumps(
        [sorted(t.strip() for t in targets), sorted(clean_ports)]).encode()).hexdigest()[:32]
    return ScanPlan(
        scan_id=scan_id, targets=tuple(out), sni_names=names[:MAX_SNI_NAMES], rate=float(rate or 0.0),
        timeout=float(timeout or DEFAULT_TIMEOUT), concurrency=int(concurrency or DEFAULT_CONCURRENCY),
        identity=identity,
    )
