"""Audit retention: purge what the ``[audit]`` retention no longer keeps, now and then.

The settings are collector/config/audit.py's. Purging keeps the chain verifiable: the last purged
event's hash becomes the anchor that ``audit verify`` starts from, and the purge is itself an
audited event (collector/registry/audit.py). With several collectors on one database each may
purge; the chain's lock makes the second find nothing left to do.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from collector.config.audit import AuditSettings
from collector.registry import Registry

log = logging.getLogger(__name__)


class AuditRetention:
    """Purges what the retention no longer keeps, now and then."""

    def __init__(self, registry: Registry, settings: AuditSettings, clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.settings = settings
        self.clock = clock

    def run_once(self) -> int:
        """Purge events older than the retention; how many went."""
        if self.settings.retention is None:
            return 0
        now = self.clock()
        n = self.registry.audit.purge(now - self.settings.retention, now, actor="collector")
        if n:
            log.info("audit retention: %d event(s) older than %s purged", n, self.settings.retention)
        return n
