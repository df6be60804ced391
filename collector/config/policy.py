"""The ``[policy]`` table of the collector config.

```toml
[policy]
file = "policy.toml"          # relative to the config's folder; imported at start when it changed
evaluate_interval = "1h"      # how often every certificate is evaluated again (default 1h)
```

What the file holds and how it is imported and evaluated: collector/domain/policy.py and
collector/services/policy_runner.py.
"""
from __future__ import annotations

import datetime as dt
import pathlib
from dataclasses import dataclass
from typing import Any, Mapping

from collector.config.reader import Table

__all__ = ["PolicySettings"]

DEFAULT_INTERVAL = dt.timedelta(hours=1)
KEYS = frozenset({"file", "evaluate_interval"})


@dataclass(frozen=True)
class PolicySettings:
    file: pathlib.Path | None = None
    evaluate_interval: dt.timedelta = DEFAULT_INTERVAL

    @classmethod
    def from_table(cls, t: Table, base: pathlib.Path) -> PolicySettings:
        """From the ``[policy]`` table; a relative ``file`` is taken from ``base`` (the config's folder)."""
        t.check_keys(KEYS)
        file = None
        if t.get("file"):
            file = pathlib.Path(str(t["file"]))
            if not file.is_absolute():
                file = base / file
        interval = dt.timedelta(seconds=t.duration("evaluate_interval", "1h"))
        if interval.total_seconds() < 1:
            raise t.error("[policy] evaluate_interval must be at least 1s", "evaluate_interval")
        return cls(file=file, evaluate_interval=interval)

    @classmethod
    def from_config(cls, doc: Mapping[str, Any], base: pathlib.Path) -> PolicySettings:
        """From the config document's tables (``{"policy": {...}}``); defaults without one."""
        return cls.from_table(Table(doc, "config").table("policy", "[policy]"), base)
