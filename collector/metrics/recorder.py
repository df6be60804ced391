"""The recorder the collector's services are handed: what happened, for the metrics.

A contract with no implementation of its own but :data:`NULL` (does nothing), so that a
service imports nothing of Prometheus and works unchanged in tests and tools that do not
expose metrics. The Prometheus implementation is collector/metrics/instruments.py; the
composition root chooses.
"""
from __future__ import annotations

from typing import Protocol

__all__ = ["Recorder", "NullRecorder", "NULL"]


class Recorder(Protocol):
    def renewal_finished(self, outcome: str, seconds: float) -> None:
        """A renewal job ended: ``verified``, ``rolled_back`` or ``failed``; ``seconds`` since it was requested."""

    def report_ingested(self, outcome: str, seconds: float) -> None:
        """An agent's report: ``stored``, ``resync`` (not stored: a full report is asked for) or ``error``."""

    def delivery_attempted(self, channel: str, outcome: str) -> None:
        """A notification delivery on ``channel``: ``sent``, ``retrying`` or ``failed``."""

    def scheduler_run(self, job: str, outcome: str, seconds: float) -> None:
        """A scheduled job this process ran: ``ok`` or ``error``."""

    def db_error(self, kind: str) -> None:
        """The database driver raised (``kind``: the exception class name)."""

    def db_connected(self) -> None:
        """The pool opened a new database connection (at start, after a lost one, when the pool grows)."""


class NullRecorder:
    """Records nothing."""

    def renewal_finished(self, outcome: str, seconds: float) -> None:
        pass

    def report_ingested(self, outcome: str, seconds: float) -> None:
        pass

    def delivery_attempted(self, channel: str, outcome: str) -> None:
        pass

    def scheduler_run(self, job: str, outcome: str, seconds: float) -> None:
        pass

    def db_error(self, kind: str) -> None:
        pass

    def db_connected(self) -> None:
        pass


NULL: Recorder = NullRecorder()
