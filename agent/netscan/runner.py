"""Running network scans: one at a time, off the command stream's thread, with progress about every second.

:class:`NetworkScans` takes accepted :class:`~agent.netscan.plan.ScanRequest` values, runs
them on a thread of its own (never on the command stream's), sends a
:class:`~agent.netscan.records.ScanProgress` about every second through the ``send``
callable it is given, keeps the results (:mod:`agent.netscan.records`), asks for an
inventory report that carries them (:class:`ReportGate`), and then sends the final progress.

Idempotent: a scan id that already finished is answered with its recorded final
progress, not run again; one that is running or queued is not started twice.
"""
from __future__ import annotations

import logging
import pathlib
import queue
import threading
import time
from typing import Any, Callable, Sequence

from agent.endpoints.survey import Observation, survey
from agent.config import AgentConfig
from agent.errors import AgentError
from agent.netscan.plan import DEFAULT_MAX_TARGETS, MAX_SNI_NAMES, ScanRefused, ScanRequest, plan_scan
from agent.netscan.records import ScanProgress, ScanRecord, load_record, prune_records, save_record

log = logging.getLogger(__name__)

__all__ = ["NetworkScans", "ReportGate", "network_scans_for", "Send", "REPORT_WAIT"]

REPORT_WAIT = 900.0             # seconds to wait for the report that carries the results


class ReportGate:
    """Counts inventory reports, so a scan can wait for one that started after its results were saved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started = 0
        self._stored = 0        # the highest ticket whose report was stored

    def begin(self) -> int:
        with self._cond:
            self._started += 1
            return self._started

    def stored(self, ticket: int) -> None:
        with self._cond:
            self._stored = max(self._stored, ticket)
            self._cond.notify_all()

    def next_ticket(self) -> int:
        with self._cond:
            return self._started + 1

    def wait_stored(self, ticket: int, timeout: float, poke: Callable[[], None] = lambda: None,
                    stop: threading.Event | None = None) -> bool:
        """Wait until a report with ``ticket`` or later was stored, calling ``poke`` (ask for a report) every second."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._stored < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return False
                poke()
                self._cond.wait(min(1.0, remaining))
            return True


Send = Callable[[ScanProgress], bool]        # -> sent?


class NetworkScans:
    """Runs network scan commands one at a time off the command-stream thread (see the module doc)."""

    def __init__(self, data_dir: pathlib.Path, send: Send, *, max_targets: int = DEFAULT_MAX_TARGETS,
                 allowed: bool = True, ca_file: str | None = None, allowed_ranges: Sequence[Any] = (),
                 max_sni_names: int = MAX_SNI_NAMES,
                 gate: ReportGate | None = None, request_report: Callable[[], None] = lambda: None,
                 report_wait: float = REPORT_WAIT, clock: Callable[[], float] = time.time,
                 progress_interval: float = 1.0) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.send = send
        self.max_targets = max_targets
        self.allowed = allowed
        self.allowed_ranges = tuple(allowed_ranges)
        self.ca_file = ca_file
        self.max_sni_names = max_sni_names
        self.gate = gate
        self.request_report = request_report
        self.report_wait = report_wait
        self.clock = clock
        self.progress_interval = progress_interval
        self._queue: queue.Queue[Any] = queue.Queue()
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the command-stream side: never blocks

    def submit(self, cmd: ScanRequest) -> None:
        """Accept a scan request: answer a finished one from its record, queue a new one."""
        rec = load_record(self.data_dir, cmd.scan_id)
        if rec is not None:
            log.info("network scan %s already %s: sending its final progress again", cmd.scan_id, rec.state)
            self._progress(rec.progress())
            return
        with self._lock:
            if cmd.scan_id in self._active:
                log.info("network scan %s is already queued or running", cmd.scan_id)
                return
            self._active.add(cmd.scan_id)
            self._queue.put(cmd)          # under the lock: an idle worker exits only when the queue is empty
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._worker, name="network-scan", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)

    def wait_idle(self, timeout: float) -> bool:
        """For tests and shutdown: wait until no scan is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._active:
                    return True
            time.sleep(0.02)
        return False

    # -- the scan thread

    def _progress(self, progress: ScanProgress) -> None:
        try:
            self.send(progress)
        except Exception:  # noqa: BLE001 - progress is best effort; the final one is resent on request
            log.debug("could not send network scan progress", exc_info=True)

    def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                cmd = self._queue.get(timeout=30)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if cmd is None:
                return
            try:
                self.run(cmd)
            except Exception as e:  # noqa: BLE001 - one broken scan must not stop the next
                log.exception("network scan %s failed", cmd.scan_id)
                self._finish_failed(cmd.scan_id, f"the agent failed while scanning: {type(e).__name__}: {e}", 0)
            finally:
                with self._lock:
                    self._active.discard(cmd.scan_id)

    def _finish_failed(self, scan_id: str, reason: str, total: int, identity: str = "") -> ScanRecord:
        rec = ScanRecord(scan_id, "failed", reason, identity, self.clock(), total, 0, 0, 0, ())
        try:
            save_record(self.data_dir, rec)
        except (OSError, AgentError) as e:
            log.warning("network scan %s: cannot record its failure: %s", scan_id, e)
        self._progress(rec.progress())
        return rec

    def run(self, cmd: ScanRequest) -> ScanRecord:
        """Run one scan to the end (on the calling thread) and return its record."""
        scan_id = cmd.scan_id
        if not self.allowed:
            return self._finish_failed(scan_id, "network scans are disabled on this agent "
                                                "([endpoints] network_scans = false)", 0)
        try:
            plan = plan_scan(
                scan_id, list(cmd.targets), list(cmd.ports), rate=cmd.rate_per_second, timeout=cmd.timeout_seconds,
                concurrency=cmd.concurrency, sni_names=list(cmd.sni_names)[: self.max_sni_names],
                starttls=dict(cmd.starttls), max_targets=cmd.max_addresses, agent_max_targets=self.max_targets,
                allowed=self.allowed_ranges,
            )
        except ScanRefused as e:
            log.warning("network scan %s refused: %s", scan_id, e)
            return self._finish_failed(scan_id, str(e), 0)
        total = len(plan.targets)
        log.info("network scan %s: %d address x port pairs, %.0f/s, timeout %gs, %d in flight", scan_id, total,
                 plan.rate, plan.timeout, plan.concurrency)
        counts = {"probed": 0, "tls": 0, "errors": 0}
        lock = threading.Lock()

        def on_result(done: int, _total: int, o: Observation) -> None:
            with lock:
                counts["probed"] += 1
                if o.ok:
                    counts["tls"] += 1
                elif o.error == "handshake_failed":
                    counts["errors"] += 1

        def running() -> None:
            with lock:
                c = dict(counts)
            self._progress(ScanProgress(scan_id=scan_id, state="running", targets_total=total, probed=c["probed"],
                                        tls_found=c["tls"], errors=c["errors"]))

        finished = threading.Event()

        def ticker() -> None:
            while not finished.wait(self.progress_interval):
                running()

        running()
        tick = threading.Thread(target=ticker, name=f"scan-progress-{scan_id}", daemon=True)
        tick.start()
        try:
            first, extra = survey(
                plan.targets, lambda t: plan.sni_names, concurrency=plan.concurrency, rate_per_second=plan.rate,
                timeout=plan.timeout, ca_file=self.ca_file, progress=on_result, stop=self._stop,
            )
        except AgentError as e:
            finished.set()
            return self._finish_failed(scan_id, str(e), total, plan.identity)
        finally:
            finished.set()
            tick.join(timeout=2)
        if self._stop.is_set():
            log.info("network scan %s interrupted: the agent is stopping (it runs again when the collector resends it)",
                     scan_id)
            return ScanRecord(scan_id, "failed", "interrupted", plan.identity, self.clock(), total, counts["probed"],
                              counts["tls"], counts["errors"], ())
        found = [o for o in first if o.ok] + extra
        reason = (f"{counts['tls']} TLS endpoints among {total} address x port pairs"
                  + (f", {counts['errors']} handshake failures" if counts["errors"] else ""))
        rec = ScanRecord(scan_id, "done", reason, plan.identity, self.clock(), total, counts["probed"],
                         counts["tls"], counts["errors"], tuple(found))
        save_record(self.data_dir, rec)
        prune_records(self.data_dir, rec)
        running()
        log.info("network scan %s done: %s", scan_id, reason)
        if self.gate is not None and found:
            ticket = self.gate.next_ticket()
            if not self.gate.wait_stored(ticket, self.report_wait, poke=self.request_report, stop=self._stop):
                log.warning("network scan %s: no inventory report was stored within %.0fs; its results go with the "
                            "next one", scan_id, self.report_wait)
        self._progress(rec.progress())
        return rec


def network_scans_for(config: AgentConfig, send: Send, gate: ReportGate, request_report: Callable[[], None]) -> NetworkScans:
    """The scan runner for an agent service, with its [endpoints] settings."""
    s = config.endpoints
    return NetworkScans(config.data_dir, send, max_targets=s.network_scan_max_targets, allowed=s.network_scans,
                        allowed_ranges=s.network_scan_allowed, ca_file=s.ca_file, max_sni_names=s.max_sni_names,
                        gate=gate, request_report=request_report)
