"""Network scan jobs: the collector asks this agent to probe address ranges it alone can reach.

A :class:`~certfleet.v1.agent_pb2.NetworkScan` names targets (``10.0.0.5``,
``10.0.0.0/28``, ``10.0.0.1-10.0.0.20`` or ``10.0.0.1-20``, IPv4 or IPv6) and
ports. :func:`plan_scan` turns it into probe targets, or refuses it with a
reason (too many address x port pairs, a malformed target); it is a pure
function. :class:`NetworkScans` runs accepted scans one at a time on a thread of
its own (never on the command stream's), sends ``NetworkScanProgress`` about
every second, keeps the results in ``<data_dir>/netscan/<scan_id>.json`` (mode
0600, written atomically), asks for an inventory report that carries them (the
:class:`~agent.discovery.source.EndpointSource` reports them as locations of
source ``network_scan``), and then sends the final progress.

Idempotent: a scan id that already finished is answered with its recorded final
progress, not run again; one that is running or queued is not started twice.
Bounded: a finished scan replaces the results of earlier scans of the same
targets and ports (their final progress is kept), and only the newest
:data:`KEEP_RESULTS` scans keep results at all.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import pathlib
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from agent.errors import AgentError
from agent.fsutil import atomic_write

from agent.endpoints.survey import Observation, Target, survey
from agent.endpoints.starttls import PROTOCOLS, default_starttls

log = logging.getLogger(__name__)

__all__ = ["ScanPlan", "ScanRefused", "plan_scan", "parse_target_spec", "NetworkScans", "ReportGate",
           "ScanRecord", "load_records", "DEFAULT_MAX_TARGETS", "network_scans_for"]

DEFAULT_MAX_TARGETS = 4096      # address x port pairs
KEEP_RESULTS = 16               # finished scans whose results are kept (and reported)
KEEP_RECORDS = 512              # finished scans remembered at all (their final progress, for resends)
MAX_SNI_NAMES = 16
DEFAULT_TIMEOUT = 3.0
DEFAULT_CONCURRENCY = 64
REPORT_WAIT = 900.0             # seconds to wait for the report that carries the results
_SCAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ScanRefused(AgentError):
    """The scan cannot be run as asked; the message says why (sent to the collector as the reason)."""


@dataclass(frozen=True)
class ScanPlan:
    scan_id: str
    targets: tuple[Target, ...]      # address x port, in order
    sni_names: tuple[str, ...]
    rate: float
    timeout: float
    concurrency: int
    identity: str                    # the same targets + ports give the same identity (a rescan replaces results)


def parse_target_spec(spec: str) -> tuple[Address, Address]:
    """``addr``, ``net/prefix`` or ``first-last`` (``10.0.0.1-20`` too) -> (first, last); ValueError with the reason."""
    text = spec.strip()
    if not text:
        raise ValueError("an empty target")
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{spec!r} is not an address range (address/prefix)") from None
        return net[0], net[-1]
    if "-" in text:
        a, _, b = text.partition("-")
        try:
            first = ipaddress.ip_address(a.strip())
        except ValueError:
            raise ValueError(f"{spec!r}: {a.strip()!r} is not an IP address") from None
        b = b.strip()
        try:
            last = ipaddress.ip_address(b)
        except ValueError:
            if isinstance(first, ipaddress.IPv4Address) and b.isdigit() and int(b) < 256:
                last = ipaddress.IPv4Address(int(first) & 0xFFFFFF00 | int(b))      # 10.0.0.1-20
            else:
                raise ValueError(f"{spec!r}: {b!r} is not an IP address") from None
        if first.version != last.version:
            raise ValueError(f"{spec!r}: the range mixes IPv4 and IPv6")
        if int(last) < int(first):
            raise ValueError(f"{spec!r}: the range ends before it starts")
        return first, last
    try:
        a = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise ValueError(f"{spec!r} is not an IP address, a CIDR range or a first-last range") from None
    return a, a


def _addresses(first: Address, last: Address) -> Iterator[Address]:
    cls = type(first)
    for n in range(int(first), int(last) + 1):
        yield cls(n)


def plan_scan(scan_id: str, targets: Sequence[str], ports: Sequence[int], *, rate: float = 0.0,
              timeout: float = 0.0, concurrency: int = 0, sni_names: Sequence[str] = (),
              starttls: Mapping[int, str] | None = None, max_targets: int = 0,
              agent_max_targets: int = DEFAULT_MAX_TARGETS) -> ScanPlan:
    """The probe targets of a scan, or :class:`ScanRefused` with the reason. Pure: no I/O.

    ``max_targets`` (the command's; 0 = the agent's) limits address x port
    pairs and can only lower the agent's own limit. Ranges are counted before
    they are expanded, so a /8 is refused without being listed.
    """
    if not _SCAN_ID.match(scan_id or ""):
        raise ScanRefused(f"refusing a scan id that is not an id: {scan_id!r}")
    limit = min(max_targets, agent_max_targets) if max_targets else agent_max_targets
    if not targets:
        raise ScanRefused("the scan names no targets")
    clean_ports = []
    for p in ports:
        if not 1 <= int(p) <= 65535:
            raise ScanRefused(f"port {p} is not a port number (1 to 65535)")
        if int(p) not in clean_ports:
            clean_ports.append(int(p))
    if not clean_ports:
        raise ScanRefused("the scan names no ports")
    ranges = []
    count = 0
    for spec in targets:
        try:
            first, last = parse_target_spec(spec)
        except ValueError as e:
            raise ScanRefused(f"bad target: {e}") from None
        ranges.append((first, last))
        count += (int(last) - int(first) + 1) * len(clean_ports)
        if count > limit:
            total = sum(int(b) - int(a) + 1 for a, b in ranges) * len(clean_ports)
            more = "" if spec == targets[-1] else " (and more)"
            raise ScanRefused(
                f"the scan asks for {total}{more} address x port pairs; this agent probes at most {limit} per scan "
                f"(split the range, or raise [endpoints] network_scan_max_targets on the agent)"
            )
    st = dict(starttls or {})
    for port, proto in st.items():
        if proto and proto not in PROTOCOLS:
            raise ScanRefused(f"port {port}: unknown STARTTLS protocol {proto!r} (known: {', '.join(PROTOCOLS)})")
    seen: set[Address] = set()
    out: list[Target] = []
    for first, last in ranges:
        for addr in _addresses(first, last):
            if addr in seen:
                continue
            seen.add(addr)
            for port in clean_ports:
                out.append(Target(str(addr), port, "", default_starttls(port, st)))
    if timeout and not 0 < timeout <= 120:
        raise ScanRefused(f"timeout {timeout:g} s is out of range (more than 0, at most 120 s)")
    if rate < 0 or rate != rate:
        raise ScanRefused(f"rate {rate!r} is not a number of connections per second")
    names = tuple(dict.fromkeys(n.strip().lower() for n in sni_names if n and n.strip() and not n.startswith("*")))
    identity = hashlib.sha256(json.dumps(
        [sorted(t.strip() for t in targets), sorted(clean_ports)]).encode()).hexdigest()[:32]
    return ScanPlan(
        scan_id=scan_id, targets=tuple(out), sni_names=names[:MAX_SNI_NAMES], rate=float(rate or 0.0),
        timeout=float(timeout or DEFAULT_TIMEOUT), concurrency=int(concurrency or DEFAULT_CONCURRENCY),
        identity=identity,
    )


# --------------------------------------------------------------------------- records on disk


@dataclass(frozen=True)
class ScanRecord:
    """A finished scan as recorded in ``<data_dir>/netscan/<scan_id>.json``."""

    scan_id: str
    state: str                     # done, failed
    reason: str
    identity: str
    finished_at: float
    targets_total: int
    probed: int
    tls_found: int
    errors: int
    results: tuple[Observation, ...]   # only TLS endpoints; empty when superseded or failed

    def progress_fields(self) -> dict[str, Any]:
        return dict(scan_id=self.scan_id, state=self.state, targets_total=self.targets_total, probed=self.probed,
                    tls_found=self.tls_found, errors=self.errors, reason=self.reason)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _record_json(rec: ScanRecord) -> bytes:
    certs: dict[str, str] = {}

    def ref(der: bytes) -> str:
        fp = hashlib.sha256(der).hexdigest()
        certs.setdefault(fp, _b64(der))
        return fp

    results = [{
        "host": o.target.host, "port": o.target.port, "sni": o.target.sni, "starttls": o.target.starttls,
        "leaf": ref(o.leaf_der), "chain": [ref(d) for d in o.chain_ders], "protocol": o.protocol, "cipher": o.cipher,
        "chain_valid": o.chain_valid, "validation_error": o.validation_error, "seconds": round(o.seconds, 4),
    } for o in rec.results]
    doc = {
        "version": 1, "scan_id": rec.scan_id, "state": rec.state, "reason": rec.reason, "identity": rec.identity,
        "finished_at": rec.finished_at, "targets_total": rec.targets_total, "probed": rec.probed,
        "tls_found": rec.tls_found, "errors": rec.errors, "results": results, "certificates": certs,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _record_from(doc: Mapping[str, Any]) -> ScanRecord:
    certs = {fp: base64.b64decode(b) for fp, b in doc.get("certificates", {}).items()}
    results = []
    for r in doc.get("results", []):
        leaf = certs[r["leaf"]]
        results.append(Observation(
            Target(r["host"], int(r["port"]), r.get("sni", ""), r.get("starttls", "")), True,
            fingerprint=r["leaf"], leaf_der=leaf, chain_ders=tuple(certs[c] for c in r.get("chain", [])),
            protocol=r.get("protocol", ""), cipher=r.get("cipher", ""), chain_valid=bool(r.get("chain_valid")),
            validation_error=r.get("validation_error", ""), seconds=float(r.get("seconds", 0.0)),
        ))
    return ScanRecord(
        scan_id=doc["scan_id"], state=doc["state"], reason=doc.get("reason", ""), identity=doc.get("identity", ""),
        finished_at=float(doc.get("finished_at", 0.0)), targets_total=int(doc.get("targets_total", 0)),
        probed=int(doc.get("probed", 0)), tls_found=int(doc.get("tls_found", 0)), errors=int(doc.get("errors", 0)),
        results=tuple(results),
    )


def scan_dir(data_dir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(data_dir) / "netscan"


def load_record(data_dir: pathlib.Path, scan_id: str) -> ScanRecord | None:
    if not _SCAN_ID.match(scan_id or ""):
        return None
    path = scan_dir(data_dir) / f"{scan_id}.json"
    try:
        return _record_from(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("network scan record %s is unreadable (%s): ignoring it", path, e)
        return None


def load_records(data_dir: pathlib.Path) -> list[ScanRecord]:
    """Every readable finished scan with results, newest first."""
    d = scan_dir(data_dir)
    try:
        names = [n for n in os.listdir(d) if n.endswith(".json")]
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        rec = load_record(data_dir, n[:-5])
        if rec is not None and rec.results:
            out.append(rec)
    out.sort(key=lambda r: r.finished_at, reverse=True)
    return out


def save_record(data_dir: pathlib.Path, rec: ScanRecord) -> None:
    d = scan_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(d / f"{rec.scan_id}.json", _record_json(rec), 0o600)


def prune_records(data_dir: pathlib.Path, newest: ScanRecord) -> None:
    """Drop the results of older scans of the same targets and ports, and of all but the newest KEEP_RESULTS scans."""
    d = scan_dir(data_dir)
    metas = []
    for n in os.listdir(d):
        if not n.endswith(".json") or n == f"{newest.scan_id}.json":
            continue
        rec = load_record(data_dir, n[:-5])
        if rec is not None:
            metas.append(rec)
    metas.sort(key=lambda r: r.finished_at, reverse=True)
    with_results = 1
    for i, rec in enumerate(metas):
        drop = rec.identity == newest.identity or with_results >= KEEP_RESULTS
        if rec.results and drop:
            reason = (f"{rec.reason}; results replaced by scan {newest.scan_id}" if rec.identity == newest.identity
                      else f"{rec.reason}; results dropped (only the newest {KEEP_RESULTS} scans keep results)")
            save_record(data_dir, dataclasses.replace(rec, results=(), reason=reason))
        elif rec.results:
            with_results += 1
        if i + 1 >= KEEP_RECORDS:
            try:
                (d / f"{rec.scan_id}.json").unlink()
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------------- running scans


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


Send = Callable[[Any], bool]        # a NetworkScanProgress -> sent?


class NetworkScans:
    """Runs network scan commands one at a time off the command-stream thread (see the module doc)."""

    def __init__(self, data_dir: pathlib.Path, send: Send, *, max_targets: int = DEFAULT_MAX_TARGETS,
                 allowed: bool = True, ca_file: str | None = None, max_sni_names: int = MAX_SNI_NAMES,
                 gate: ReportGate | None = None, request_report: Callable[[], None] = lambda: None,
                 report_wait: float = REPORT_WAIT, clock: Callable[[], float] = time.time,
                 progress_interval: float = 1.0) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.send = send
        self.max_targets = max_targets
        self.allowed = allowed
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

    def submit(self, cmd: Any) -> None:
        """Accept a NetworkScan command: answer a finished one from its record, queue a new one."""
        rec = load_record(self.data_dir, cmd.scan_id)
        if rec is not None:
            log.info("network scan %s already %s: sending its final progress again", cmd.scan_id, rec.state)
            self._progress(**rec.progress_fields())
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

    def _progress(self, **fields: Any) -> None:
        from certfleet.v1 import agent_pb2

        try:
            self.send(agent_pb2.NetworkScanProgress(**fields))
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
        self._progress(**rec.progress_fields())
        return rec

    def run(self, cmd: Any) -> ScanRecord:
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
            self._progress(scan_id=scan_id, state="running", targets_total=total, probed=c["probed"],
                           tls_found=c["tls"], errors=c["errors"])

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
        self._progress(**rec.progress_fields())
        return rec


def network_scans_for(config: Any, send: Send, gate: ReportGate, request_report: Callable[[], None]) -> NetworkScans:
    """The scan runner for an agent service, with its [endpoints] settings."""
    s = config.endpoints
    return NetworkScans(config.data_dir, send, max_targets=s.network_scan_max_targets, allowed=s.network_scans,
                        ca_file=s.ca_file, max_sni_names=s.max_sni_names, gate=gate, request_report=request_report)
