"""How long a Prometheus scrape of the collector's /metrics takes on a large registry (a benchmark, not a test).

    .venv/bin/python bench/bench_metrics.py [--certs 100000] [--agents 100] [--no-pg] [--no-sqlite] [--runs 10]

Fills a registry (a temporary SQLite file, and a fresh PostgreSQL database dropped afterwards)
as bench/bench_governance.py does: ``certs`` distinct certificates at 3 locations each, expiries
spread over -30..+400 days, owners, rules and explicit assignments, a policy with its violations
(one evaluation), and some renewal jobs in several states. Then serves the collector's metrics
exactly as ``[metrics] listen`` does (the same prometheus_client registry: FleetCollector with the
owner breakdown, the per-process counters, the gRPC call counters; certfleet/metricshttp.py on
loopback) and times ``GET /metrics`` over HTTP: the median and the worst of ``runs`` scrapes after one
warm-up. The background refreshes (expiry windows, owner breakdown) are timed too: they are not part of a scrape.

Target (issue 18): a scrape under 100 ms at 100,000 certificates.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry, disable_created_metrics  # noqa: E402

from bench.bench_governance import NOW, certificates, fill, pg_database  # noqa: E402
from certfleet.metricshttp import MetricsServer  # noqa: E402
from collector.metrics.fleet import FleetCollector, expiry_counts, owner_counts, violation_counts  # noqa: E402
from collector.metrics.instruments import PromRecorder  # noqa: E402
from collector.metrics.interceptor import CallMetrics  # noqa: E402
from collector.registry import Registry  # noqa: E402

TARGET = 0.100


def clock() -> dt.datetime:
    return NOW


def add_jobs(reg: Registry, fps: list[str], n: int = 300) -> int:
    """Renewal jobs for ``n`` certificates (one per location, in ``requested``), some of them stuck."""
    made = 0
    for i in range(n):
        made += len(reg.jobs.create_renewals(fps[i], None, "web", "bench", "bench", NOW))
    reg.jobs.mark_stuck(NOW + dt.timedelta(days=30))   # past every deadline: all stuck
    for i in range(n, 2 * n):
        made += len(reg.jobs.create_renewals(fps[i], None, "web", "bench", "bench", NOW))
    return made


def measure(label: str, url: str, ders: list[bytes], fps: list[str], agents: int, runs: int,
            policy: bool = True) -> None:
    print(f"\n== {label}: {len(ders):,} certificates, {3 * len(ders):,} locations, {agents} agents")
    reg = Registry.open(url)
    try:
        fill(reg, ders, fps, agents)
        if policy:     # violations only change the background refresh, not a scrape: --no-policy saves minutes
            t = time.perf_counter()
            stats = reg.policies.evaluate_all(NOW)
            print(f"  policy evaluated (violations stored) in {time.perf_counter() - t:.0f} s: {stats}", flush=True)
        print(f"  {add_jobs(reg, fps)} renewal jobs made", flush=True)
        disable_created_metrics()
        prom = CollectorRegistry()
        recorder = PromRecorder(prom)
        CallMetrics(prom)
        expiry, owners, violations = expiry_counts(reg, clock), owner_counts(reg, clock), violation_counts(reg)
        for part, every in ((expiry, "refresh"), (violations, "refresh"), (owners, "owner_refresh")):
            t = time.perf_counter()
            part.refresh()
            part.refresh()
            print(f"  background refresh of {part.part} (every [metrics] {every}): {part.seconds:.3f} s "
                  f"(first {time.perf_counter() - t - part.seconds:.3f} s)")
        prom.register(FleetCollector(reg, silent_after=dt.timedelta(days=1), connected=lambda: 0, expiry=expiry,
                                     owners=owners, violations=violations, recorder=recorder, clock=clock))
        server = MetricsServer(prom, "127.0.0.1", 0)
        server.start()
        try:
            def scrape() -> tuple[float, int]:
                t0 = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30) as r:
                    body = r.read()
                return time.perf_counter() - t0, len(body)

            scrape()                      # warm-up
            times = []
            size = 0
            for _ in range(runs):
                el, size = scrape()
                times.append(el)
            med, worst = statistics.median(times), max(times)
            print(f"  GET /metrics: median {med * 1000:.1f} ms, worst {worst * 1000:.1f} ms over {runs} scrapes "
                  f"({size:,} bytes) -> {'OK' if med < TARGET else 'OVER'} (target < {TARGET * 1000:.0f} ms)"
, flush=True)
        finally:
            server.stop()
    finally:
        reg.close()


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # stopped: still drop the PostgreSQL database
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--certs", type=int, default=100_000)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-policy", action="store_true", help="store no violations (saves the policy evaluation)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    ders = certificates(args.certs)
    fps = [hashlib.sha256(d).hexdigest() for d in ders]
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            measure("SQLite", f"sqlite:///{tmp}/bench.db", ders, fps, args.agents, args.runs, not args.no_policy)
    if not args.no_pg:
        url, drop = pg_database()
        try:
            measure("PostgreSQL", url, ders, fps, args.agents, args.runs, not args.no_policy)
        finally:
            drop()


if __name__ == "__main__":
    main()
