"""The ``[netscan]`` table of the collector config: which ranges a network scan may cover.

```toml
[netscan]
allowed_ranges = ["10.0.0.0/8", "192.168.10.0/24"]   # default: none (every scan is refused)
```

Loopback and link-local addresses only when a listed network is itself loopback or link-local
(certfleet/ranges.py). The agent has its own list (``[endpoints] network_scan_allowed``): a scan
must be inside both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certfleet.ranges import parse_networks
from collector.config.reader import Table

__all__ = ["NetscanSettings"]

KEYS = frozenset({"allowed_ranges"})


@dataclass(frozen=True)
class NetscanSettings:
    allowed_ranges: tuple[Any, ...] = ()

    @classmethod
    def from_table(cls, t: Table) -> NetscanSettings:
        t.check_keys(KEYS)
        raw = t.get("allowed_ranges", [])
        if not isinstance(raw, list):
            raise t.error("[netscan] allowed_ranges must be a list of networks such as [\"10.0.0.0/8\"]",
                          "allowed_ranges")
        try:
            return cls(parse_networks(raw))
        except ValueError as e:
            raise t.error(f"[netscan] allowed_ranges: {e}", "allowed_ranges") from None
