"""Finished network scans on disk: ``<data_dir>/netscan/<scan_id>.json`` (mode 0600, written atomically).

A record keeps a scan's final progress (so a resent command is answered, not run again)
and the TLS endpoints it found (reported as locations of source ``network_scan`` by
:class:`~agent.sources.endpoints.EndpointSource`). Bounded: a finished scan replaces the
results of earlier scans of the same targets and ports (their final progress is kept),
and only the newest :data:`KEEP_RESULTS` scans keep results at all.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Mapping

from agent.endpoints.survey import Observation, Target
from agent.fsutil import atomic_write
from agent.netscan.plan import SCAN_ID

log = logging.getLogger(__name__)

__all__ = ["ScanRecord", "ScanProgress", "load_record", "load_records", "save_record", "prune_records", "scan_dir",
           "KEEP_RESULTS", "KEEP_RECORDS"]

KEEP_RESULTS = 16               # finished scans whose results are kept (and reported)
KEEP_RECORDS = 512              # finished scans remembered at all (their final progress, for resends)


@dataclass(frozen=True)
class ScanProgress:
    """How a scan is going, as the agent tells the collector (state running, done or failed)."""

    scan_id: str
    state: str
    targets_total: int = 0
    probed: int = 0
    tls_found: int = 0
    errors: int = 0
    reason: str = ""


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

    def progress(self) -> ScanProgress:
        """The final progress of this scan (what is sent again when the command comes again)."""
        return ScanProgress(scan_id=self.scan_id, state=self.state, targets_total=self.targets_total,
                            probed=self.probed, tls_found=self.tls_found, errors=self.errors, reason=self.reason)


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
    if not SCAN_ID.fullmatch(scan_id or ""):
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
