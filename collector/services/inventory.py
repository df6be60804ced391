"""An agent's inventory report, from its stream into the registry, then the policy.

The servicer (collector/api/agents.py ``Report``) converts each chunk the agent streams and hands
it to an :class:`IncomingReport`: the first chunk carries the header and opens one registry
transaction (collector/registry/ingest.py ``ReportTxn``); every chunk adds its upserts, removals
and scan errors to it; :meth:`IncomingReport.finish` commits it. A stored report is then evaluated
against the policy (:meth:`IncomingReport.evaluate`, in the background: the scheduled evaluation
catches up when it fails).

The servicer receives a report whole (spooled) before it calls :meth:`IncomingReport.store`, so the
transaction lasts as long as the writing, not as long as the agent takes to send.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from collector import errors
from collector.metrics.recorder import NULL, Recorder
from collector.registry import Registry, ReportTxn
from collector.registry.types import LocationIn, LocationKeyIn, ReportHeaderIn, ReportResult, ScanErrorIn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportChunkIn:
    """One chunk of a report as the agent streamed it (the wire's ReportChunk, read at the door)."""

    header: ReportHeaderIn | None = None        # the first chunk's, and only its
    upserts: Sequence[LocationIn] = ()
    removals: Sequence[LocationKeyIn] = ()
    errors: Sequence[ScanErrorIn] = ()


class Inventory:
    """Takes agents' reports (one :class:`IncomingReport` per report stream)."""

    def __init__(self, registry: Registry, clock: Callable[[], dt.datetime],
                 on_new_violation: Callable[[Any], Any] | None = None) -> None:
        self.registry = registry
        self.clock = clock
        #: told of each new policy violation a report brings (the notifier's, when configured)
        self.on_new_violation = on_new_violation
        self.recorder: Recorder = NULL     # the metrics (collector/metrics/recorder.py); set by the composition root

    def receive(self, agent_id: str) -> IncomingReport:
        return IncomingReport(self, agent_id)


class IncomingReport:
    def __init__(self, inventory: Inventory, agent_id: str) -> None:
        self.inventory = inventory
        self.agent_id = agent_id
        self.result: ReportResult | None = None
        self._txn: ReportTxn | None = None
        self._started = time.perf_counter()
        self._registry_seconds = 0.0

    def add(self, chunk: ReportChunkIn) -> None:
        """Store one chunk; the first must carry the header (blocking)."""
        t0 = time.perf_counter()
        try:
            if self._txn is None:
                if chunk.header is None:
                    raise errors.InvalidInput("the first chunk of a report must carry its header")
                if not chunk.header.report_id:
                    raise errors.InvalidInput("a report needs a report_id")
                self._txn = self.inventory.registry.begin_report(self.agent_id, chunk.header, self.inventory.clock())
            if chunk.upserts:
                self._txn.add_upserts(list(chunk.upserts))
            if chunk.removals:
                self._txn.add_removals(list(chunk.removals))
            if chunk.errors:
                self._txn.add_errors(list(chunk.errors))
        finally:
            self._registry_seconds += time.perf_counter() - t0

    def store(self, chunks: Iterable[ReportChunkIn]) -> ReportResult:
        """Store a report received whole: every chunk, then commit, in one transaction (blocking);
        rolled back when a chunk is refused."""
        try:
            for chunk in chunks:
                self.add(chunk)
            return self.finish()
        finally:
            self.abort()

    def finish(self) -> ReportResult:
        """Commit the report (blocking); what the registry did with it."""
        if self._txn is None:
            raise errors.InvalidInput("empty report")
        t0 = time.perf_counter()
        try:
            result = self._txn.finish()
        finally:
            self._registry_seconds += time.perf_counter() - t0
        self._txn = None
        self.result = result
        self.inventory.recorder.report_ingested("stored" if result.stored else "resync", time.perf_counter() - self._started)
        log.info(
            "report from %s: stored=%s seq=%d upserted=%d removed=%d new_certs=%d resync=%s in %.2fs (registry %.2fs)",
            self.agent_id, result.stored, result.sequence, result.locations_upserted, result.locations_removed,
            result.certificates_new, result.resync_required, time.perf_counter() - self._started,
            self._registry_seconds,
        )
        return result

    def abort(self) -> None:
        """Roll back a report that did not finish (the stream broke, a chunk was refused)."""
        if self._txn is not None:
            txn, self._txn = self._txn, None
            txn.abort()
            self.inventory.recorder.report_ingested("error", time.perf_counter() - self._started)

    def evaluate(self) -> None:
        """Evaluate the agent's certificates against the policy once the report is stored
        (collector/domain/policy.py; blocking). A failure is logged: the scheduled evaluation catches up."""
        if self.result is None or not self.result.stored:
            return
        inv = self.inventory
        try:
            inv.registry.policies.evaluate_agent(self.agent_id, inv.clock(), inv.on_new_violation)
        except Exception:  # noqa: BLE001 - the scheduled evaluation catches up
            log.exception("policy evaluation after the report from %s failed", self.agent_id)
