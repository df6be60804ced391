"""Audit retention: the ``[audit]`` table of the collector config and the periodic purge.

```toml
[audit]
retention = "400d"        # events older than this are purged (default 400d); "forever" keeps all
purge_interval = "6h"     # how often a collector purges (default 6h)
```

Purging keeps the chain verifiable: the last purged event's hash becomes the
anchor that ``audit verify`` starts from, and the purge is itself an audited
event (collector/registry/audit.py). With several collectors on one database
each may purge; the chain's lock makes the second find nothing left to do.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from collector.config.core import ConfigError, parse_duration
from collector.registry.audit import DEFAULT_RETENTION
from collector.registry.repository import Registry

log = logging.getLogger(__name__)

DEFAULT_PURGE_INTERVAL = dt.timedelta(hours=6)
MIN_RETENTION = dt.timedelta(days=1)
_KEYS = {"retention", "purge_interval"}


@dataclass(frozen=True)
class AuditSettings:
    retention: dt.timedelta | None = DEFAULT_RETENTION   # None: keep every event
    purge_interval: dt.timedelta = DEFAULT_PURGE_INTERVAL

    @classmethod
    def from_config(cls, extra: Mapping[str, Any]) -> AuditSettings:
        """From the config's ``[audit]`` table (``CollectorConfig.extra["audit"]``); defaults without one."""
        section = extra.get("audit", {}) or {}
        if not isinstance(section, dict):
            raise ConfigError("[audit] must be a table")
        unknown = sorted(set(section) - _KEYS)
        if unknown:
            raise ConfigError(f"unknown key(s) in [audit]: {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
        raw = section.get("retention", "400d")
        retention: dt.timedelta | None
        if isinstance(raw, str) and raw.strip().lower() in ("forever", "never", "none"):
            retention = None
        else:
            retention = dt.timedelta(seconds=parse_duration(raw, "[audit] retention"))
            if retention < MIN_RETENTION:
                raise ConfigError(f"[audit] retention must be at least 1d (or \"forever\"), not {raw!r}")
        interval = dt.timedelta(seconds=parse_duration(section.get("purge_interval", "6h"), "[audit] purge_interval"))
        if interval.total_seconds() < 1:
            raise ConfigError("[audit] purge_interval must be at least 1s")
        return cls(retention=retention, purge_interval=interval)


class AuditRetention:
    """Purges what the retention no longer keeps, now and then."""

    def __init__(self, registry: Registry, settings: AuditSettings, clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.settings = settings
        self.clock = clock

    @classmethod
    def from_config(cls, extra: Mapping[str, Any], registry: Registry,
                    clock: Callable[[], dt.datetime]) -> AuditRetention:
        return cls(registry, AuditSettings.from_config(extra), clock)

    def run_once(self) -> int:
        """Purge events older than the retention; how many went."""
        if self.settings.retention is None:
            return 0
        now = self.clock()
        n = self.registry.audit.purge(now - self.settings.retention, now, actor="collector")
        if n:
            log.info("audit retention: %d event(s) older than %s purged", n, self.settings.retention)
        return n
