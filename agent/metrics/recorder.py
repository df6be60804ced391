"""What the agent tells its metrics: scans, reports, jobs. A contract and a do-nothing default.

The sync loop (agent/sync.py) and the service (agent/service.py) are handed a
:class:`ScanObserver`; the exporter (agent/metrics/exporter.py) implements it. Nothing here
imports Prometheus.
"""
from __future__ import annotations

from typing import Protocol, Sequence

from agent.inventory import FoundCert, ScanProblem

__all__ = ["ScanObserver", "NullObserver", "NULL"]


class ScanObserver(Protocol):
    def scan_started(self) -> None:
        """A scan of every store and source begins."""

    def file_scanned(self, path: str, store_type: str, entries: Sequence[FoundCert],
                     problems: Sequence[ScanProblem]) -> None:
        """One file's certificates (``der`` may be empty for an unchanged file: known by fingerprint) and problems."""

    def source_collected(self, entries: Sequence[FoundCert], problems: Sequence[ScanProblem]) -> None:
        """What a location source (TLS endpoints, the Windows store) found."""

    def scan_finished(self) -> None:
        """The scan ended: what was not seen in it is gone."""

    def report_stored(self) -> None:
        """The collector stored a report."""

    def job_ran(self, state: str) -> None:
        """An install job ended in ``state`` (verified, rolled_back, failed)."""


class NullObserver:
    def scan_started(self) -> None:
        pass

    def file_scanned(self, path: str, store_type: str, entries: Sequence[FoundCert],
                     problems: Sequence[ScanProblem]) -> None:
        pass

    def source_collected(self, entries: Sequence[FoundCert], problems: Sequence[ScanProblem]) -> None:
        pass

    def scan_finished(self) -> None:
        pass

    def report_stored(self) -> None:
        pass

    def job_ran(self, state: str) -> None:
        pass


NULL: ScanObserver = NullObserver()
