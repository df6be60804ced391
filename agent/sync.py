"""Inventory reports to the collector: full the first time, deltas after.

A report is built while the scan runs (:meth:`Syncer.report`): the locations to send come
out as a stream, so neither side holds the whole inventory's certificate data at once;
which ones is decided by :class:`agent.delta.Delta` against the acknowledged state
(agent/state.py). That state moves forward only when the collector says it stored the
report; a failed or lost report is simply recomputed from disk next time, so nothing is
lost while the collector is unreachable.

The report goes out through a :class:`ReportSender` (the Report RPC:
:class:`agent.transport.report.GrpcReports`, chosen by the agent's composition root);
this module knows no wire type.
"""
from __future__ import annotations

import datetime as dt
import logging
import pathlib
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Protocol, Sequence

from agent.delta import Delta
from agent.discovery.annotate import FileAnnotator
from agent.errors import AgentError
from agent.host import HostFacts, host_facts
from agent.inventory import FoundCert, LocationKey, ScanProblem
from agent.metrics.recorder import NULL, ScanObserver
from agent.scan.scanner import Scanner
from agent.sources.base import LocationSource, SourceError
from agent.state import SyncState, key_str, load_state, save_state

__all__ = ["Syncer", "SyncError", "SyncOutcome", "ReportPlan", "OutgoingReport", "ReportAck", "ReportSender"]

log = logging.getLogger(__name__)


class SyncError(AgentError):
    """A report could not be delivered or was not stored."""


@dataclass
class ReportPlan:
    """One report's numbers, filled in while its content is generated."""

    full: bool
    sequence: int
    current: dict[str, str] = field(default_factory=dict)   # the acknowledged state once this report is stored
    upserts: int = 0
    removals: int = 0
    problems: int = 0


@dataclass
class OutgoingReport:
    """One report as the agent builds it.

    ``upserts`` is a stream produced while the scan runs; once it is exhausted,
    ``problems`` (the complete current set of scan problems) and ``removals`` are
    complete. A sender puts the header first, the upserts in chunks, and the problems
    and removals last.
    """

    report_id: str
    full: bool
    sequence: int
    base_sequence: int                 # delta only: the sequence this delta builds on (0 for a full report)
    host: HostFacts
    scanned_at: dt.datetime
    upserts: Iterator[FoundCert]
    problems: list[ScanProblem] = field(default_factory=list)
    removals: list[LocationKey] = field(default_factory=list)


@dataclass(frozen=True)
class ReportAck:
    """The collector's answer to a report."""

    stored: bool
    sequence: int = 0                  # the sequence the collector now holds for this agent
    resync_required: bool = False      # send a full report next
    message: str = ""
    locations_upserted: int = 0
    locations_removed: int = 0
    certificates_new: int = 0


class ReportSender(Protocol):
    """Delivers one report and returns the collector's answer; raises :class:`SyncError` when it cannot."""

    def send(self, report: OutgoingReport) -> ReportAck: ...


@dataclass(frozen=True)
class SyncOutcome:
    full: bool
    sequence: int
    upserts: int
    removals: int
    problems: int
    certificates_new: int


class Syncer:
    """Builds the reports of one agent (store files, then sources) and sends them until one is stored."""

    def __init__(
        self, scanner: Scanner, sender: ReportSender, state_path: pathlib.Path, agent_id: str,
        hostname: str, labels: Mapping[str, str], sources: Sequence[LocationSource] = (),
        annotator: FileAnnotator | None | str = "config",
    ) -> None:
        self.scanner = scanner
        self.sources = list(sources)
        # process links and stale-service flags on file locations (agent/discovery/annotate.py);
        # "config": as the scanner's config's [discovery] says, None: off
        self.annotator = FileAnnotator.from_config(scanner.config) if annotator == "config" else annotator
        self.sender = sender
        self.state_path = state_path
        self.state: SyncState = load_state(state_path, agent_id)
        self.hostname = hostname
        self.labels = dict(labels)
        self.observer: ScanObserver = NULL     # exporter mode (agent/metrics/); set by the composition root

    def report(self, plan: ReportPlan, now: dt.datetime) -> OutgoingReport:
        """The report ``plan`` describes; its upserts are generated as they are read (see :class:`OutgoingReport`)."""
        st = self.state
        report = OutgoingReport(
            report_id=str(uuid.uuid4()), full=plan.full, sequence=plan.sequence,
            base_sequence=0 if plan.full else st.sequence, host=host_facts(self.hostname, self.labels),
            scanned_at=now, upserts=iter(()),
        )
        delta = Delta(st.acked, plan.full)
        plan.current = delta.current
        report.upserts = self._upserts(plan, report, delta)
        return report

    def _upserts(self, plan: ReportPlan, report: OutgoingReport, delta: Delta) -> Iterator[FoundCert]:
        st = self.state
        problems = report.problems
        annot = self.annotator.begin() if isinstance(self.annotator, FileAnnotator) else None
        self.observer.scan_started()
        for fs in self.scanner.scan(force=plan.full):
            entries = fs.entries
            if annot is not None and entries:
                # processes and stale flags first: they are part of the digest
                entries = annot.annotate(entries, reread=lambda fs=fs: self.scanner.read_file(fs.path, fs.store_name).entries)
            if (fs.reused and not plan.full and any(not c.der for c in entries)
                    and any(st.acked.get(key_str(c.key)) != c.digest() for c in entries)):
                # Unchanged since the last scan, but the collector never acknowledged
                # it (an earlier report failed) or its annotations changed: cached
                # entries carry no DER, so read this one file again.
                fs = self.scanner.read_file(fs.path, fs.store_name)
                entries = annot.annotate(fs.entries) if annot is not None else fs.entries
            problems.extend(fs.problems)
            self.observer.file_scanned(fs.path, fs.store_type, entries, fs.problems)
            for c in entries:
                if delta.offer(c):
                    plan.upserts += 1
                    yield c
        if annot is not None:
            annot.finish()
        for source in self.sources:
            try:
                result = source.collect(report.scanned_at)
            except SourceError as e:
                problems.append(ScanProblem(source.name, "", "", e.reason, e.message))
                # keep what this source last reported: a probe that could not run proves nothing gone
                delta.keep(source.store_types)
                continue
            problems.extend(result.problems)
            self.observer.source_collected(result.entries, result.problems)
            for c in result.entries:
                if delta.offer(c):
                    plan.upserts += 1
                    yield c
        self.observer.scan_finished()
        plan.problems = len(problems)
        report.removals = delta.removals()
        plan.removals = len(report.removals) if not plan.full else 0

    def sync(self, full: bool = False, now: dt.datetime | None = None) -> SyncOutcome:
        """One report; a full one when asked, when there is no acknowledged base, or when the collector wants it."""
        for _attempt in range(3):
            now = now or dt.datetime.now(dt.timezone.utc)
            plan = ReportPlan(full=full or self.state.sequence == 0, sequence=self.state.sequence + 1)
            ack = self.sender.send(self.report(plan, now))
            if ack.stored:
                self.state.sequence = ack.sequence
                self.state.acked = plan.current
                save_state(self.state_path, self.state)
                self.observer.report_stored()
                log.info(
                    "%s report %d stored: %d upserted, %d removed, %d new certificates, %d scan errors",
                    "full" if plan.full else "delta", ack.sequence, ack.locations_upserted,
                    ack.locations_removed, ack.certificates_new, plan.problems,
                )
                outcome = SyncOutcome(plan.full, ack.sequence, plan.upserts, plan.removals, plan.problems,
                                      ack.certificates_new)
                if not ack.resync_required:
                    return outcome
            log.info("collector asks for a full report: %s", ack.message or "resync requested")
            full = True
            now = None
        raise SyncError("the collector did not store the report after a full resync")
