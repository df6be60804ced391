"""The ``[discovery]`` section: which process uses which file, stale services, trust stores.

::

    [discovery]
    processes = true                  # link store files to the processes that use them
    stale_check = true                # probe those processes' ports: flag files newer than what is served
    trust_store_paths = ["/opt/app/truststore/**"]   # more trust stores (besides /etc/ssl/certs, cacerts, ...)
    probe_timeout = "3s"              # per handshake of the stale check

:func:`parse_discovery` reads the table (an :class:`agent.config.values.Table`, which
names file and line in its errors); :mod:`agent.config` composes it into
``AgentConfig.discovery``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - the reader is handed in by agent.config
    from agent.config.values import Table

__all__ = ["DiscoverySettings", "parse_discovery", "DEFAULT_PROBE_TIMEOUT"]

_DISCOVERY_KEYS = {"processes", "stale_check", "trust_store_paths", "probe_timeout"}
DEFAULT_PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class DiscoverySettings:
    """The ``[discovery]`` table (see the module doc)."""

    processes: bool = True
    stale_check: bool = True
    trust_store_paths: tuple[str, ...] = ()
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT


def parse_discovery(table: Table) -> DiscoverySettings:
    """Validate a ``[discovery]`` table (an empty one gives the defaults)."""
    table.reject_unknown(_DISCOVERY_KEYS)
    processes = table.boolean("processes", True)
    stale_check = table.boolean("stale_check", True)
    paths_raw = table.get("trust_store_paths", [])
    if isinstance(paths_raw, str):
        paths_raw = [paths_raw]
    if not isinstance(paths_raw, list) or not all(isinstance(p, str) and p.strip() for p in paths_raw):
        raise table.error("trust_store_paths", "must be a list of paths or globs such as [\"/opt/app/truststore/**\"]")
    paths = []
    for p in paths_raw:
        q = Path(p.strip()).expanduser()
        paths.append(os.path.normpath(q if q.is_absolute() else table.base / q))
    timeout = table.duration("probe_timeout", DEFAULT_PROBE_TIMEOUT)
    if not 0 < timeout <= 300:
        raise table.error("probe_timeout", "must be more than 0 and at most 300 seconds")
    return DiscoverySettings(processes=processes, stale_check=stale_check, trust_store_paths=tuple(paths),
                             probe_timeout=timeout)
