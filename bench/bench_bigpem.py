"""Time and peak memory of ``certfleet-agent scan`` on one huge PEM file (issue 13: bounded memory).

    .venv/bin/python bench/bench_bigpem.py [--certs 100000] [--format json] [--compare /work/main/.venv]

Writes a PEM bundle of N distinct certificates (one real certificate, its serial rewritten: the
signatures do not verify, which a scan never checks), configures a store over it and runs the
scan command of this checkout (and of ``--compare``'s venv, side by side) with its output sent to
a file. Prints wall time, peak RSS (the child's ru_maxrss) and the output's size and count.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.crafted_certs import write_bulk_pem  # noqa: E402


def run(agent: str, cfg: Path, fmt: str, out: Path) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        p = subprocess.Popen([agent, "scan", "--config", str(cfg), "--format", fmt], stdout=f,
                             stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        print(f"  {agent}: exit {p.returncode}: {p.stderr.read().decode()[-500:]}")
    return took, usage.ru_maxrss / 1024, p.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--certs", type=int, default=100_000)
    ap.add_argument("--format", default="json", choices=["json", "table"])
    ap.add_argument("--compare", default="/work/main/.venv", help="another checkout's venv to run side by side")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bundle = tmp / "big.pem"
        t0 = time.perf_counter()
        write_bulk_pem(bundle, ns.certs)
        print(f"{ns.certs} certificates, {bundle.stat().st_size / 2**20:.1f} MB PEM, made in "
              f"{time.perf_counter() - t0:.1f}s")
        cfg = tmp / "agent.toml"
        cfg.write_text(f'[agent]\ndata_dir = "{tmp / "data"}"\nhostname = "bench"\nmax_file_size = "1GB"\n'
                       f'[[store]]\nname = "big"\ntype = "pem"\npaths = ["{bundle}"]\n')
        cfg.chmod(0o600)
        agents = [("this checkout", str(Path(sys.executable).parent / "certfleet-agent"))]
        other = Path(ns.compare) / "bin" / "certfleet-agent"
        if ns.compare and other.exists() and other.resolve() != Path(agents[0][1]).resolve():
            agents.append((ns.compare, str(other)))
        for label, agent in agents:
            out = tmp / "out"
            took, rss, code = run(agent, cfg, ns.format, out)
            size = out.stat().st_size
            count = ""
            if ns.format == "json" and code == 0:
                doc = json.loads(out.read_bytes())
                count = f", {len(doc['certificates'])} certificates in the output"
            print(f"{label:>20}: scan --format {ns.format}: {took:.1f}s, peak RSS {rss:.0f} MB, "
                  f"exit {code}, output {size / 2**20:.1f} MB{count}")
            out.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
