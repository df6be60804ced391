"""Settings of the discovery features, one parser per config section.

[endpoints]: TLS endpoint scanning (agent/discovery/source.py, netscan.py)

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
    network_scans = true             # the collector may ask this agent to scan address ranges
    network_scan_max_targets = 4096  # largest address x port count a network scan may ask for

Each parser takes (raw table, where, base dir) and returns frozen settings or
raises ConfigError naming "file:line". The [discovery] parser follows below.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from agent.config import parse_duration
from agent.errors import ConfigError

from agent.discovery.endpoints import Target, parse_endpoint
from agent.discovery.starttls import PROTOCOLS

__all__ = ["EndpointSettings", "parse_endpoints", "parse_target", "endpoint_settings", "DiscoverySettings",
           "parse_discovery", "discovery_settings"]

ENDPOINTS = "endpoints"
_ENDPOINT_KEYS = {
    "listeners", "targets", "exclude_ports", "starttls", "timeout", "concurrency", "rate", "max_sni_names",
    "ca_file", "network_scans", "network_scan_max_targets",
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
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def parse_endpoints(raw: Any, where: Callable[..., str], base: Path) -> EndpointSettings:
    def err(key: str | None, msg: str) -> ConfigError:
        return ConfigError(f"{where(ENDPOINTS, 0, key)}: [endpoints]: {msg}")

    for key in raw:
        if key not in _ENDPOINT_KEYS:
            raise err(key, f"unknown key {key!r} (known keys: {', '.join(sorted(_ENDPOINT_KEYS))})")

    def boolean(key: str, default: bool) -> bool:
        v = raw.get(key, default)
        if not isinstance(v, bool):
            raise err(key, f"{key} must be true or false")
        return v

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

    try:
        timeout = parse_duration(raw.get("timeout", 3.0))
    except ValueError as e:
        raise err("timeout", str(e)) from None
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
        ca_file = str(p if p.is_absolute() else base / p)

    return EndpointSettings(
        listeners=boolean("listeners", True),
        targets=tuple(targets),
        exclude_ports=frozenset(_port(p) for p in excl),  # type: ignore[misc]
        starttls=MappingProxyType(starttls),
        timeout=timeout,
        concurrency=positive_int("concurrency", 32, 1, 1024),
        rate=float(rate),
        max_sni_names=positive_int("max_sni_names", 16, 0, 1000),
        ca_file=ca_file,
        network_scans=boolean("network_scans", True),
        network_scan_max_targets=positive_int("network_scan_max_targets", 4096, 1, 1_000_000),
    )


def endpoint_settings(config: Any) -> EndpointSettings:
    """The [endpoints] settings of an AgentConfig (defaults when the section is absent)."""
    s = getattr(config, "sections", {}).get(ENDPOINTS)
    return s if isinstance(s, EndpointSettings) else EndpointSettings()


# --------------------------------------------------------------------------- [discovery]

DISCOVERY = "discovery"
_DISCOVERY_KEYS = {"processes", "stale_check", "trust_store_paths", "probe_timeout"}
DEFAULT_PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class DiscoverySettings:
    """The ``[discovery]`` table: which process uses which file, stale services, trust stores.

    ::

        [discovery]
        processes = true                  # link store files to the processes that use them
        stale_check = true                # probe those processes' ports: flag files newer than what is served
        trust_store_paths = ["/opt/app/truststore/**"]   # more trust stores (besides /etc/ssl/certs, cacerts, ...)
        probe_timeout = "3s"              # per handshake of the stale check
    """

    processes: bool = True
    stale_check: bool = True
    trust_store_paths: tuple[str, ...] = ()
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT


def parse_discovery(raw: Any, where: Callable[..., str], base: Path) -> DiscoverySettings:
    """Validate a ``[discovery]`` table (``{}`` gives the defaults)."""

    def err(key: str | None, msg: str) -> ConfigError:
        return ConfigError(f"{where('discovery', 0, key)}: [discovery] {key + ': ' if key else ''}{msg}")

    for key in raw:
        if key not in _DISCOVERY_KEYS:
            raise err(key, f"unknown key {key!r} (known keys: {', '.join(sorted(_DISCOVERY_KEYS))})")
    flags = {}
    for key in ("processes", "stale_check"):
        value = raw.get(key, True)
        if not isinstance(value, bool):
            raise err(key, "must be true or false")
        flags[key] = value
    paths_raw = raw.get("trust_store_paths", [])
    if isinstance(paths_raw, str):
        paths_raw = [paths_raw]
    if not isinstance(paths_raw, list) or not all(isinstance(p, str) and p.strip() for p in paths_raw):
        raise err("trust_store_paths", "must be a list of paths or globs such as [\"/opt/app/truststore/**\"]")
    paths = []
    for p in paths_raw:
        q = Path(p.strip()).expanduser()
        paths.append(os.path.normpath(q if q.is_absolute() else base / q))
    try:
        timeout = parse_duration(raw.get("probe_timeout", DEFAULT_PROBE_TIMEOUT))
    except ValueError as e:
        raise err("probe_timeout", str(e)) from None
    if not 0 < timeout <= 300:
        raise err("probe_timeout", "must be more than 0 and at most 300 seconds")
    return DiscoverySettings(processes=flags["processes"], stale_check=flags["stale_check"],
                             trust_store_paths=tuple(paths), probe_timeout=timeout)


def discovery_settings(config: Any) -> DiscoverySettings:
    """The ``[discovery]`` settings of an AgentConfig (defaults when it was built without them)."""
    found = getattr(config, "sections", {}).get(DISCOVERY)
    return found if isinstance(found, DiscoverySettings) else DiscoverySettings()
