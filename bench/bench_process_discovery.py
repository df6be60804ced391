#!/usr/bin/env python3
"""What "which process serves which certificate" and the stale check cost per report (a benchmark, not a test).

    .venv/bin/python bench/bench_process_discovery.py [--servers 20] [--rounds 5]

Starts ``--servers`` ``openssl s_server`` processes on 127.x addresses (each
with its own certificate file, so each file gets a link and a stale-check
handshake), then times, ``--rounds`` times:

- ``snapshot()``: the process walk (names, executables, users, command lines),
  the socket table, open files of listening processes;
- ``build_index()``: configs and command lines -> links;
- a whole report's annotation of the store files (links + stale handshakes).

and prints CPU seconds per report and what that is, spread over the scan
interval, as a share of one core. Nothing of this runs between reports.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import psutil

    from agent.config import load_config
    from agent.discovery.annotate import FileAnnotator
    from agent.discovery.linker import build_index
    from agent.discovery.processes import snapshot
    from agent.scan.scanner import Scanner
    from tests.helpers.tls_servers import SServer, TestCA, site_files

    work = Path(tempfile.mkdtemp(prefix="certfleet-bench-proc-"))
    servers: list[SServer] = []
    try:
        ca = TestCA("Certfleet Bench")
        for i in range(args.servers):
            site = site_files(work / f"s{i}", ca, (f"svc{i}.bench.test",))
            servers.append(SServer(f"127.77.{i // 200}.{i % 200 + 1}", site))
        cfg = work / "agent.toml"
        cfg.write_text(f'[agent]\ndata_dir = "{work}/data"\n[[store]]\nname = "bench"\npaths = ["{work}/s*/cert.pem"]\n')
        config = load_config(cfg)
        scanner = Scanner(config)
        annotator = FileAnnotator.from_config(config)
        assert annotator is not None
        me = psutil.Process()

        def cpu() -> float:
            t = me.cpu_times()
            return t.user + t.system

        snap, index, report, walls = [], [], [], []
        for _ in range(args.rounds):
            c0 = cpu()
            table = snapshot()
            c1 = cpu()
            build_index(table, config.reload_actions)
            c2 = cpu()
            w0 = time.perf_counter()
            c3 = cpu()
            ann = annotator.begin()
            linked = sum(1 for fs in scanner.scan() for e in ann.annotate(fs.entries) if e.processes)
            ann.finish()
            c4 = cpu()
            walls.append(time.perf_counter() - w0)
            snap.append(c1 - c0)
            index.append(c2 - c1)
            report.append(c4 - c3)
        per_report = statistics.median(report)
        print(f"host: {len(psutil.pids())} processes, {len(table.listeners)} listening TCP sockets; "
              f"{args.servers} s_server processes, {linked} linked certificate files")
        print(f"snapshot():         {statistics.median(snap) * 1000:7.1f} ms CPU (median of {args.rounds})")
        print(f"build_index():      {statistics.median(index) * 1000:7.1f} ms CPU")
        print(f"report annotation:  {per_report * 1000:7.1f} ms CPU, {statistics.median(walls) * 1000:.0f} ms wall "
              f"(snapshot + links + {args.servers} stale-check handshakes)")
        for interval in (60, 900):
            print(f"  spread over scan_interval {interval:>4d} s: {per_report / interval * 100:.4f}% of one core")
        print("between reports: nothing runs (0%)")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
