"""Exporter mode: the host's certificates as Prometheus series, like x509-certificate-exporter.

Per certificate found in the last scan (service certificates; trust-store anchors are left
out, as that exporter watches only the files it is given):

    x509_cert_not_after{filepath, filename, alias, chain_index, store_type, subject, subject_CN,
                        issuer, issuer_CN, serial_number}      seconds since the epoch
    x509_cert_not_before{...}                                  seconds since the epoch
    x509_cert_expired{...}                                     1 when not_after is past

per file or item that could not be read, ``x509_cert_error{filepath, store_type, reason} 1``
(the reasons of agent/inventory.py REASONS) and ``x509_read_errors`` (their number); and the
agent's own figures: ``certfleet_agent_scan_duration_seconds``, ``certfleet_agent_scans_total``,
``certfleet_agent_scan_errors{reason}``, ``certfleet_agent_last_scan_timestamp_seconds``,
``certfleet_agent_last_report_timestamp_seconds``, ``certfleet_agent_jobs_total{state}``,
``certfleet_agent_certificates``.

The series are swapped in whole when a scan ends (a scrape during a scan sees the previous
scan), and certificate facts are kept by fingerprint: the scanner hands unchanged files over
without their DER, known by fingerprint from the scan that read them.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Iterator, NamedTuple, Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.inventory import TRUST_ANCHOR, FoundCert, ScanProblem
from agent.scan.scanner import Scanner

__all__ = ["Exporter", "watch", "CERT_LABELS"]

log = logging.getLogger(__name__)

CERT_LABELS = ("filepath", "filename", "alias", "chain_index", "store_type", "subject", "subject_CN", "issuer",
               "issuer_CN", "serial_number")
_MAX = 256     # a label value longer than this (a DN with many parts) is cut


class _Facts(NamedTuple):
    not_before: float
    not_after: float
    subject: str
    subject_cn: str
    issuer: str
    issuer_cn: str
    serial: str


class _Series(NamedTuple):
    labels: tuple[str, ...]
    not_before: float
    not_after: float


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _facts(der: bytes) -> _Facts:
    c = x509.load_der_x509_certificate(der)
    return _Facts(c.not_valid_before_utc.timestamp(), c.not_valid_after_utc.timestamp(),
                  c.subject.rfc4514_string()[:_MAX], _cn(c.subject)[:_MAX], c.issuer.rfc4514_string()[:_MAX],
                  _cn(c.issuer)[:_MAX], format(c.serial_number, "x"))


class _Scan:
    """What one scan has seen so far."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, ...], _Series] = {}
        self.errors: dict[tuple[str, str, str], int] = {}
        self.facts: dict[str, _Facts] = {}
        self.started = time.perf_counter()


class Exporter(Collector):
    """A :class:`~agent.metrics.recorder.ScanObserver` and a prometheus_client collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._current = _Scan()
        self._next: _Scan | None = None
        self._scans = 0
        self._scan_seconds: float | None = None
        self._last_scan: float | None = None
        self._last_report: float | None = None
        self._jobs: dict[str, int] = {}
        self.registry.register(self)

    # -- the observer ------------------------------------------------------------------------

    def scan_started(self) -> None:
        self._next = _Scan()

    def file_scanned(self, path: str, store_type: str, entries: Sequence[FoundCert],
                     problems: Sequence[ScanProblem]) -> None:
        scan = self._next
        if scan is None:
            return
        for e in entries:
            self._add(scan, e)
        for p in problems:
            key = (p.path or path, p.store_type or store_type, p.reason)
            scan.errors[key] = scan.errors.get(key, 0) + 1

    def source_collected(self, entries: Sequence[FoundCert], problems: Sequence[ScanProblem]) -> None:
        self.file_scanned("", "", entries, problems)

    def scan_finished(self) -> None:
        scan, self._next = self._next, None
        if scan is None:
            return
        with self._lock:
            self._current = scan
            self._scans += 1
            self._scan_seconds = time.perf_counter() - scan.started
            self._last_scan = time.time()

    def report_stored(self) -> None:
        self._last_report = time.time()

    def job_ran(self, state: str) -> None:
        with self._lock:
            self._jobs[state] = self._jobs.get(state, 0) + 1

    def _add(self, scan: _Scan, e: FoundCert) -> None:
        if e.role == TRUST_ANCHOR:
            return
        facts = scan.facts.get(e.fingerprint) or self._current.facts.get(e.fingerprint)
        if facts is None:
            if not e.der:
                return           # unchanged file from before this exporter saw it: its next reading brings it
            try:
                facts = _facts(e.der)
            except ValueError as err:
                log.debug("metrics: %s: certificate not parsed: %s", e.key.path, err)
                return
        scan.facts[e.fingerprint] = facts
        k = e.key
        labels = (k.path, os.path.basename(k.path), k.alias, str(k.chain_index), k.store_type, facts.subject,
                  facts.subject_cn, facts.issuer, facts.issuer_cn, facts.serial)
        scan.series[labels] = _Series(labels, facts.not_before, facts.not_after)

    # -- the collector -----------------------------------------------------------------------

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        with self._lock:
            scan, scans, seconds = self._current, self._scans, self._scan_seconds
            last_scan, last_report, jobs = self._last_scan, self._last_report, dict(self._jobs)
        now = time.time()
        na = GaugeMetricFamily("x509_cert_not_after", "The certificate's not_after, seconds since the epoch",
                               labels=CERT_LABELS)
        nb = GaugeMetricFamily("x509_cert_not_before", "The certificate's not_before, seconds since the epoch",
                               labels=CERT_LABELS)
        expired = GaugeMetricFamily("x509_cert_expired", "1 when the certificate has expired", labels=CERT_LABELS)
        for s in scan.series.values():
            na.add_metric(s.labels, s.not_after)
            nb.add_metric(s.labels, s.not_before)
            expired.add_metric(s.labels, 1 if s.not_after < now else 0)
        yield na
        yield nb
        yield expired
        err = GaugeMetricFamily("x509_cert_error", "1 per file or item the last scan could not read, with the reason",
                                labels=["filepath", "store_type", "reason"])
        by_reason: dict[str, int] = {}
        for (path, store_type, reason), n in sorted(scan.errors.items()):
            err.add_metric([path, store_type, reason], 1)
            by_reason[reason] = by_reason.get(reason, 0) + n
        yield err
        read_errors = GaugeMetricFamily("x509_read_errors", "Items the last scan could not read")
        read_errors.add_metric([], sum(by_reason.values()))
        yield read_errors
        errs = GaugeMetricFamily("certfleet_agent_scan_errors", "Items the last scan could not read, by reason",
                                 labels=["reason"])
        for reason, n in sorted(by_reason.items()):
            errs.add_metric([reason], n)
        yield errs
        certs = GaugeMetricFamily("certfleet_agent_certificates", "Certificates at locations in the last scan")
        certs.add_metric([], len(scan.series))
        yield certs
        total = CounterMetricFamily("certfleet_agent_scans", "Scans finished since the agent started")
        total.add_metric([], scans)
        yield total
        if seconds is not None:
            g = GaugeMetricFamily("certfleet_agent_scan_duration_seconds", "How long the last scan took")
            g.add_metric([], seconds)
            yield g
        if last_scan is not None:
            g = GaugeMetricFamily("certfleet_agent_last_scan_timestamp_seconds", "When the last scan ended")
            g.add_metric([], last_scan)
            yield g
        if last_report is not None:
            g = GaugeMetricFamily("certfleet_agent_last_report_timestamp_seconds",
                                  "When the collector last stored a report of this agent")
            g.add_metric([], last_report)
            yield g
        j = CounterMetricFamily("certfleet_agent_jobs", "Install jobs run since the agent started, by final state",
                                labels=["state"])
        for state in ("verified", "rolled_back", "failed"):
            j.add_metric([state], jobs.get(state, 0))
        for state, n in sorted(jobs.items()):
            if state not in ("verified", "rolled_back", "failed"):
                j.add_metric([state], n)
        yield j


def watch(scanner: Scanner, exporter: Exporter, interval: float, stop: threading.Event) -> None:
    """``certfleet-agent exporter``: scan every ``interval`` seconds for the exporter alone (no collector)."""
    while not stop.is_set():
        try:
            exporter.scan_started()
            for fs in scanner.scan():
                exporter.file_scanned(fs.path, fs.store_type, fs.entries, fs.problems)
            exporter.scan_finished()
        except Exception:  # noqa: BLE001 - keep exporting; the next scan tries again
            log.exception("scan failed")
        stop.wait(interval)
