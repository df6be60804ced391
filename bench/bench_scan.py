#!/usr/bin/env python3
"""Benchmark the agent's scanner on many PEM files (a benchmark, not a test).

    .venv/bin/python bench/bench_scan.py [--files 20000] [--dir DIR]

1. Makes N distinct certificates (small EC certificates signed by one CA key,
   with cryptography) and writes one PEM file each, 100 per directory. The set
   is cached in DIR (default: $TMPDIR/certfleet-bench-N) and reused next time.
2. In a fresh subprocess pinned to one CPU (so generation memory does not
   count), runs a cold scan (new Scanner, every file read, DER + SHA-256 +
   key presence for each), then an unchanged rescan, and reports certs/s, the
   rescan speed-up and peak RSS (ru_maxrss). It also times a bare
   scandir + stat of every file: no rescan that notices in-place edits can be
   faster than that floor.

Targets: cold >= 15,000 certificates/s, rescan >= 10x faster than cold,
peak RSS < 100 MB. Files are in the page cache (just written or read), so
"cold" means the scanner knows nothing yet, not that the disk is cold.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RATE = 15_000.0
TARGET_SPEEDUP = 10.0
TARGET_RSS_MB = 100.0
PER_DIR = 100


def generate(dest: Path, n: int) -> float:
    """Write ``n`` distinct one-certificate PEM files under ``dest``; return seconds taken."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    marker = dest / ".complete"
    if marker.exists() and marker.read_text().strip() == str(n):
        return 0.0
    t0 = time.perf_counter()
    dest.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certfleet bench CA")])
    leaf_keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(200)]
    now = dt.datetime.now(dt.timezone.utc)
    sha = hashes.SHA256()
    pem = serialization.Encoding.PEM
    for i in range(n):
        d = dest / f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            d.mkdir(exist_ok=True)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"host{i}.bench.example")]))
            .issuer_name(ca_name)
            .public_key(leaf_keys[i % len(leaf_keys)])
            .serial_number(i + 1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30 + i % 365))
            .sign(ca_key, sha)
        )
        (d / f"cert{i:05d}.pem").write_bytes(cert.public_bytes(pem))
    marker.write_text(str(n))
    return time.perf_counter() - t0


def child(dest: Path) -> None:
    """Run inside the measuring subprocess: print one JSON line of figures."""
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
    from agent.config import parse_config
    from agent.scan.scanner import Scanner

    config = parse_config(
        f'[agent]\ndata_dir = "{dest}/state"\nhostname = "bench"\n\n'
        f'[[store]]\nname = "bench"\ntype = "pem"\npaths = ["{dest}/**/*.pem"]\n'
    )
    scanner = Scanner(config)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    t0 = time.perf_counter()
    certs = files = with_key = 0
    for fs in scanner.scan():
        files += 1
        for e in fs.entries:
            certs += 1
            with_key += e.has_private_key
            assert len(e.fingerprint) == 64 and e.der
    cold = time.perf_counter() - t0
    counters_cold = scanner.counters

    t0 = time.perf_counter()
    recerts = reused = 0
    for fs in scanner.scan():
        reused += fs.reused
        recerts += len(fs.entries)
    rescan = time.perf_counter() - t0

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    # The floor for any rescan that looks at every file: list the directories and stat each file.
    t0 = time.perf_counter()
    stack = [str(dest)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    entry.stat()
    floor = time.perf_counter() - t0
    print(json.dumps({
        "files": files, "certificates": certs, "with_key": with_key, "problems": counters_cold.problems,
        "cold_s": cold, "rescan_s": rescan, "floor_s": floor, "rescan_certificates": recerts, "reused": reused,
        "rss_mb": rss / 1024, "rss_before_scan_mb": rss_before / 1024,
        "cpu": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20_000, help="number of PEM files (default 20000)")
    ap.add_argument("--dir", type=Path, default=None, help="where to keep the generated files")
    ap.add_argument("--runs", type=int, default=3, help="measuring subprocesses; the best is reported")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0

    dest = args.dir or Path(tempfile.gettempdir()) / f"certfleet-bench-{args.files}"
    took = generate(dest, args.files)
    print(f"certificates: {args.files} PEM files in {dest}"
          + (f" (generated in {took:.1f}s)" if took else " (cached)"))
    results = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, __file__, "--child", str(dest)], capture_output=True, text=True,
                             check=True, cwd=ROOT)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(results, key=lambda r: r["cold_s"])
    rate = best["certificates"] / best["cold_s"]
    speedup = best["cold_s"] / best["rescan_s"] if best["rescan_s"] else float("inf")
    rss = max(r["rss_mb"] for r in results)
    ok = lambda good: "ok" if good else "BELOW TARGET"  # noqa: E731
    print(f"one core (cpu {best['cpu']}), best of {len(results)} fresh processes:")
    print(f"  cold scan:      {best['certificates']} certificates, {best['files']} files in {best['cold_s']:.3f}s"
          f" = {rate:,.0f} certificates/s  [target >= {TARGET_RATE:,.0f}: {ok(rate >= TARGET_RATE)}]")
    print(f"  unchanged scan: {best['rescan_s']:.3f}s ({best['reused']} files reused) = {speedup:.1f}x faster"
          f"  [target >= {TARGET_SPEEDUP:.0f}x: {ok(speedup >= TARGET_SPEEDUP)}]")
    print(f"  (floor: listing every directory and stat'ing every file takes {best['floor_s']:.3f}s here)")
    print(f"  peak RSS:       {rss:.1f} MB (interpreter and imports: {best['rss_before_scan_mb']:.1f} MB)"
          f"  [target < {TARGET_RSS_MB:.0f} MB: {ok(rss < TARGET_RSS_MB)}]")
    print("  all runs (cold s / rescan s): " + ", ".join(f"{r['cold_s']:.3f}/{r['rescan_s']:.3f}" for r in results))
    return 0 if rate >= TARGET_RATE and speedup >= TARGET_SPEEDUP and rss < TARGET_RSS_MB else 1


if __name__ == "__main__":
    sys.exit(main())
