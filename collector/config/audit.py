"""The ``[audit]`` table of the collector config.

```toml
[audit]
retention = "400d"        # events older than this are purged (default 400d); "forever" keeps all
purge_interval = "6h"     # how often a collector purges (default 6h)
key_file = "audit.key"    # the HMAC key of the chain, 0600, outside the database (default <data_dir>/audit.key,
                          # made on first start); relative: against the config file's folder
checkpoint_interval = "1h"   # how often a signed checkpoint is recorded (audit checkpoint export)
```

The purge itself: collector/services/audit_retention.py.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping

from collector.config.reader import Table

__all__ = ["AuditSettings"]

DEFAULT_RETENTION = dt.timedelta(days=400)
DEFAULT_PURGE_INTERVAL = dt.timedelta(hours=6)
MIN_RETENTION = dt.timedelta(days=1)
KEYS = frozenset({"retention", "purge_interval", "key_file", "checkpoint_interval"})


@dataclass(frozen=True)
class AuditSettings:
    retention: dt.timedelta | None = DEFAULT_RETENTION   # None: keep every event
    purge_interval: dt.timedelta = DEFAULT_PURGE_INTERVAL
    key_file: str = ""                                     # "": <data_dir>/audit.key
    checkpoint_interval: dt.timedelta = dt.timedelta(hours=1)

    @classmethod
    def from_table(cls, t: Table) -> AuditSettings:
        t.check_keys(KEYS)
        raw = t.get("retention", "400d")
        retention: dt.timedelta | None
        if isinstance(raw, str) and raw.strip().lower() in ("forever", "never", "none"):
            retention = None
        else:
            retention = dt.timedelta(seconds=t.duration("retention", "400d"))
            if retention < MIN_RETENTION:
                raise t.error(f"[audit] retention must be at least 1d (or \"forever\"), not {raw!r}", "retention")
        interval = dt.timedelta(seconds=t.duration("purge_interval", "6h"))
        if interval.total_seconds() < 1:
            raise t.error("[audit] purge_interval must be at least 1s", "purge_interval")
        key_file = t.get("key_file", "")
        if not isinstance(key_file, str):
            raise t.error("[audit] key_file must be a path", "key_file")
        checkpoint = dt.timedelta(seconds=t.duration("checkpoint_interval", "1h"))
        if checkpoint.total_seconds() < 1:
            raise t.error("[audit] checkpoint_interval must be at least 1s", "checkpoint_interval")
        return cls(retention=retention, purge_interval=interval, key_file=key_file, checkpoint_interval=checkpoint)

    @classmethod
    def from_config(cls, doc: Mapping[str, Any]) -> AuditSettings:
        """From the config document's tables (``{"audit": {...}}``); defaults without one."""
        return cls.from_table(Table(doc, "config").table("audit", "[audit]"))
