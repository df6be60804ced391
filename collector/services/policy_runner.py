"""The ``[policy]`` table of the collector config, and the periodic evaluation.

```toml
[policy]
file = "policy.toml"          # relative to the config's folder; imported at start when it changed
evaluate_interval = "1h"      # how often every certificate is evaluated again (default 1h)
```

The file is imported into the registry (a new audited version) when its content differs
from the last file imported, so a policy changed with ``certfleet policy set`` survives a
restart until the file itself changes. Every report is evaluated as it is stored
(collector/api/agents.py); the whole registry every ``evaluate_interval``.
"""
from __future__ import annotations

import datetime as dt
import logging
import pathlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from collector.config.core import ConfigError, parse_duration
from collector.domain.policy import PolicyError, parse_policy
from collector.registry.repository import Registry

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = dt.timedelta(hours=1)
_KEYS = {"file", "evaluate_interval"}


@dataclass(frozen=True)
class PolicySettings:
    file: pathlib.Path | None = None
    evaluate_interval: dt.timedelta = DEFAULT_INTERVAL

    @classmethod
    def from_config(cls, extra: Mapping[str, Any], base: pathlib.Path) -> PolicySettings:
        section = extra.get("policy", {}) or {}
        if not isinstance(section, dict):
            raise ConfigError("[policy] must be a table")
        unknown = sorted(set(section) - _KEYS)
        if unknown:
            raise ConfigError(f"unknown key(s) in [policy]: {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
        file = None
        if section.get("file"):
            file = pathlib.Path(str(section["file"]))
            if not file.is_absolute():
                file = base / file
        interval = dt.timedelta(seconds=parse_duration(section.get("evaluate_interval", "1h"),
                                                       "[policy] evaluate_interval"))
        if interval.total_seconds() < 1:
            raise ConfigError("[policy] evaluate_interval must be at least 1s")
        return cls(file=file, evaluate_interval=interval)


class PolicyEvaluator:
    def __init__(self, registry: Registry, settings: PolicySettings, clock: Callable[[], dt.datetime],
                 on_new_violation: Callable[[Any], Any] | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.clock = clock
        #: told of each new violation after it is stored (the notifier's, when notifications are configured)
        self.on_new_violation = on_new_violation

    def load_file(self) -> bool:
        """Import the policy file when it changed since the last import; True when imported."""
        path = self.settings.file
        if path is None:
            return False
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"[policy] file {path}: cannot read: {e.strerror}") from None
        try:
            parse_policy(text)
        except PolicyError as e:
            raise ConfigError(f"[policy] file {path}: {e}") from None
        v = self.registry.policies.load_file(text, self.clock(), name=str(path))
        if v is not None:
            log.info("policy file %s imported as version %d", path, v.version)
        return v is not None

    def run_once(self) -> Any:
        stats = self.registry.policies.evaluate_all(self.clock(), on_new_violation=self.on_new_violation)
        log.info("policy evaluation: %d certificates at %d locations; %d new, %d still, %d cleared violations; "
                 "%d exceptions expired", stats.certificates, stats.locations, stats.new, stats.still, stats.cleared,
                 stats.expired_exceptions)
        return stats
