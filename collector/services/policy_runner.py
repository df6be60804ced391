"""The policy at work: the policy file imported when it changed, and the periodic evaluation.

The ``[policy]`` settings are collector/config/policy.py's. The file is imported into the
registry (a new audited version) when its content differs from the last file imported, so a
policy changed with ``certfleet policy set`` survives a restart until the file itself changes.
Every report is evaluated as it is stored (collector/services/inventory.py); the whole registry
every ``evaluate_interval``.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable

from collector.config.policy import PolicySettings
from collector.domain.policy import PolicyError, parse_policy
from collector.errors import ConfigError
from collector.registry import Registry

log = logging.getLogger(__name__)


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
