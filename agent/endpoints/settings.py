"""The ``[endpoints]`` section: which TLS endpoints the agent probes, and how.

::

    [endpoints]
    listeners = true                 # probe every TCP port this host listens on
    targets = ["mail.example.com:25", "10.0.0.5:8443", "[::1]:993", "imap.example.com:143/imap",
               { host = "10.0.0.7", port = 443, sni = "www.example.com" }]
    exclude_ports = [22, 5432]       # never probed as local listeners
    starttls = { 2525 = "smtp" }     # besides 25/587 smtp, 143 imap, 110 pop3
    timeout = "3s"                   # per handshake: connect + STARTTLS + TLS
    concurrency = 32                 # handshakes in flight
    rate = 50                        # new connections per second (0: no limit)
    max_sni_names = 16               # SNI names tried per endpoint (DNS SANs of the stores' certificates)
    ca_file = "/etc/ssl/certs/ca-certificates.crt"   # what chains are validated against (default: the system store)
    network_scans = true             # the collector may ask this agent to scan address ranges ...
    network_scan_allowed = ["10.0.0.0/8"]   # ... inside these networks only (default: none, every scan is
                                     # refused with the reason); loopback/link-local only if listed themselves
    network_scan_max_targets = 4096  # largest address x port count a network scan may ask for

:func:`parse_endpoints` reads the table (an :class:`agent.config.values.Table`, which
names file and line in its errors); :mod:`agent.config` composes it into
``AgentConfig.endpoints``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from agent.endpoints.starttls import PROTOCOLS
from certfleet.ranges import parse_networks
from agent.endpoints.survey import Target, parse_endpoint

if TYPE_CHECKING:  # pragma: no cover - the reader is handed in by agent.config
    from agent.config.values import Table

__all__ = ["EndpointSettings", "parse_endpoints", "parse_target"]

_ENDPOINT_KEYS = {
    "listeners", "targets", "exclude_ports", "starttls", "timeout", "concurrency", "rate", "max_sni_names",
    "ca_file", "network_scans", "network_scan_max_targets", "network_scan_allowed",
}
_TARGET_KEYS = {"host", "port", "sni", "starttls"}


@dataclass(frozen=True)
class EndpointSettings:
    listeners: bool = True
    targets: tuple[Target, ...] = ()
    exclude_ports: frozenset[int] = frozenset()
    starttls: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    timeout: float = 3.0
    concurrency: int = 32
    rate: float = 0.0
    max_sni_names: int = 16
    ca_file: str | None = None
    network_scans: bool = True
    network_scan_max_targets: int = 4096
    network_scan_allowed: tuple[Any, ...] = ()     # ipaddress networks (certfleet/ranges.py)


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= 65535:
        return value
    return None


def parse_target(value: Any) -> Target:
    """``"host:port"``, ``"host:port/smtp"``, ``"[v6]:port"`` or a table {host, port, sni, starttls}.

    A target named by a host name sends that name as SNI unless ``sni`` says
    otherwise. Raises ValueError with the reason.
    """
    if isinstance(value, str):
        text, _, proto = value.strip().partition("/")
        host, port = parse_endpoint(text)
        sni, starttls = "", proto.strip().lower()
    elif isinstance(value, dict):
        unknown = set(value) - _TARGET_KEYS
        if unknown:
            raise ValueError(f"unknown key {sorted(unknown)[0]!r} in a target (known: {', '.join(sorted(_TARGET_KEYS))})")
        host = value.get("host")
        if not isinstance(host, str) or not host.strip():
            raise ValueError("a target needs host = \"name or address\"")
        host = host.strip().strip("[]")
        port_v = _port(value.get("port"))
        if port_v is None:
            raise ValueError(f"target {host}: port is required and must be a number from 1 to 65535")
        port = port_v
        sni = value.get("sni", "")
        if not isinstance(sni, str):
            raise ValueError(f"target {host}:{port}: sni must be a host name")
        starttls = value.get("starttls", "")
        if not isinstance(starttls, str):
            raise ValueError(f"target {host}:{port}: starttls must be one of {', '.join(PROTOCOLS)}")
        sni, starttls = sni.strip(), starttls.strip().lower()
    else:
        raise ValueError(f"a target is \"host:port\" or a table {{ host = ..., port = ... }}, not {value!r}")
    if starttls and starttls not in PROTOCOLS:
        raise ValueError(f"{value!r}: unknown STARTTLS protocol {starttls!r} (known: {', '.join(PROTOCOLS)})")
    if not sni and not _is_address(host):
        sni = host
    return Target(host, port, sni, starttls)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def parse_endpoints(table: Table) -> EndpointSettings:
    """Validate an ``[endpoints]`` table (an empty one gives the defaults)."""
    raw, err = table.raw, table.error
    table.reject_unknown(_ENDPOINT_KEYS)

    def positive_int(key: str, default: int, low: int, high: int) -> int:
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise err(key, f"{key} must be a whole number from {low} to {high}")
        return v

    targets_raw = raw.get("targets", [])
    if not isinstance(targets_raw, list):
        raise err("targets", "targets must be a list such as [\"mail.example.com:25/smtp\", \"10.0.0.5:443\"]")
    targets: list[Target] = []
    for n, t in enumerate(targets_raw, 1):
        try:
            target = parse_target(t)
        except ValueError as e:
            raise err("targets", f"target {n}: {e}") from None
        if target not in targets:
            targets.append(target)

    excl = raw.get("exclude_ports", [])
    if not isinstance(excl, list) or any(_port(p) is None for p in excl):
        raise err("exclude_ports", "exclude_ports must be a list of port numbers (1 to 65535)")

    st_raw = raw.get("starttls", {})
    if not isinstance(st_raw, dict):
        raise err("starttls", "starttls must be a table of port = protocol, such as { 2525 = \"smtp\" }")
    starttls: dict[int, str] = {}
    for k, v in st_raw.items():
        p = _port(k)
        if p is None:
            raise err("starttls", f"starttls: {k!r} is not a port number")
        if not isinstance(v, str) or v.strip().lower() not in PROTOCOLS:
            raise err("starttls", f"starttls: port {p}: {v!r} is not one of {', '.join(PROTOCOLS)}")
        starttls[p] = v.strip().lower()

    timeout = table.duration("timeout", 3.0)
    if not 0 < timeout <= 120:
        raise err("timeout", "timeout must be more than 0 and at most 120 seconds")

    rate = raw.get("rate", 0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0 or rate != rate:
        raise err("rate", "rate must be a number of connections per second (0: no limit)")

    ca_file = raw.get("ca_file")
    if ca_file is not None:
        if not isinstance(ca_file, str) or not ca_file.strip():
            raise err("ca_file", "ca_file must be a path to a PEM bundle")
        p = Path(ca_file).expanduser()
        ca_file = str(p if p.is_absolute() else table.base / p)

    allowed_raw = raw.get("network_scan_allowed", [])
    if not isinstance(allowed_raw, list):
        raise err("network_scan_allowed", "network_scan_allowed must be a list of networks such as [\"10.0.0.0/8\"]")
    try:
        allowed = parse_networks(allowed_raw)
    except ValueError as e:
        raise err("network_scan_allowed", f"network_scan_allowed: {e}") from None

    return EndpointSettings(
        network_scan_allowed=allowed,
        listeners=table.boolean("listeners", True),
        targets=tuple(targets),
        exclude_ports=frozenset(_port(p) for p in excl),  # type: ignore[misc]
        starttls=MappingProxyType(starttls),
        timeout=timeout,
        concurrency=positive_int("concurrency", 32, 1, 1024),
        rate=float(rate),
        max_sni_names=positive_int("max_sni_names", 16, 0, 1000),
        ca_file=ca_file,
        network_scans=table.boolean("network_scans", True),
        network_scan_max_targets=positive_int("network_scan_max_targets", 4096, 1, 1_000_000),
    )
