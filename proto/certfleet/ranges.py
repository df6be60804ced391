"""Which address ranges a network scan may cover: one rule for the agent's
``[endpoints] network_scan_allowed`` and the collector's ``[netscan] allowed_ranges``.

A range (first..last address) is allowed when one listed network holds all of it. Loopback
(127.0.0.0/8, ::1) and link-local (169.254.0.0/16 with its metadata addresses, fe80::/10)
addresses are allowed only by a listed network that is itself loopback or link-local: listing
``0.0.0.0/0`` or ``10.0.0.0/8`` never opens them.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SPECIAL = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "169.254.0.0/16", "::1/128", "fe80::/10"))


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Networks as written (``10.0.0.0/8``, ``192.0.2.7``); ValueError naming a bad one."""
    out: list[Network] = []
    for v in values:
        if not isinstance(v, str):
            raise ValueError(f"{v!r} is not a network such as \"10.0.0.0/8\"")
        try:
            out.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not a network such as \"10.0.0.0/8\"") from None
    return tuple(out)


def _special(net: Network) -> bool:
    return any(net.version == s.version and net.subnet_of(s) for s in SPECIAL)  # type: ignore[arg-type]


def refusal(first: Address, last: Address, allowed: Sequence[Network]) -> str | None:
    """Why the range first..last may not be scanned (None: it may)."""
    text = str(first) if first == last else f"{first}-{last}"
    holders = [n for n in allowed if n.version == first.version and first in n and last in n]
    if not holders:
        listed = ", ".join(map(str, allowed)) or "none"
        return f"{text} is outside the allowed ranges ({listed})"
    if any(_special(n) for n in holders):
        return None
    for s in SPECIAL:
        if s.version == first.version and int(first) <= int(s[-1]) and int(last) >= int(s[0]):
            return f"{text} includes {s} (loopback or link-local), which is scanned only when listed explicitly"
    return None
