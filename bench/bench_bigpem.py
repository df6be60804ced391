"""Time and peak memory of ``certfleet-agent scan`` on one huge PEM file (issue 13: bounded memory).

    .venv/bin/python bench/bench_bigpem.py [--certs 100000] [--format json] [--compare /work/main/.venv]
    .venv/bin/python bench/bench_bigpem.py --report [--certs 100000]    # the agent's own report path

``--report`` starts a real collector (SQLite), enrolls an agent whose store is the bundle, and
times ``certfleet-agent run --once`` (scan, stream the report in chunks, until the collector
stored it) with its peak RSS, for this checkout's agent and ``--compare``'s.

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


AGENT_ONCE = (
    "import resource, sys\n"
    "from agent.cli.main import main\n"
    "rc = main(['run', '--config', sys.argv[1], '--once', '--full'])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


def report(bundle: Path, tmp: Path, compare: str) -> None:
    """``run --once`` of this checkout's agent (and ``compare``'s) against a real collector."""
    from tests.e2e.harness import Agent, Collector  # noqa: PLC0415 - only for --report

    collector = Collector(tmp / "collector")
    collector.start()
    try:
        assert collector.init_admin().code == 0
        pythons = [("this checkout", sys.executable, ROOT)]
        other = Path(compare) / "bin" / "python" if compare else None
        if other is not None and other.exists() and other.parents[1].resolve() != Path(sys.prefix).resolve():
            pythons.append((compare, str(other), Path(compare).resolve().parent))   # its checkout: -c imports from cwd
        for n, (label, python, checkout) in enumerate(pythons):
            agent = Agent(tmp / f"agent{n}", f'[[store]]\nname = "big"\ntype = "pem"\npaths = ["{bundle}"]\n')
            agent.write_config(hostname=f"bigpem-{n}")
            agent.config.write_text(agent.config.read_text().replace("[agent]\n", '[agent]\nmax_file_size = "1GB"\n', 1))
            r = agent.enroll(collector, collector.token())
            assert r.code == 0, r.err
            t0 = time.perf_counter()
            p = subprocess.run([python, "-c", AGENT_ONCE, str(agent.config)], capture_output=True, text=True,
                               cwd=str(checkout))
            took = time.perf_counter() - t0
            rss = next((int(x.split()[1]) / 1024 for x in p.stdout.splitlines() if x.startswith("PEAK_RSS_KB")), 0)
            said = next((x for x in (p.stdout + p.stderr).splitlines() if "stored" in x), p.stderr[-300:])
            print(f"{label:>20}: run --once --full: {took:.1f}s, peak RSS {rss:.0f} MB, exit {p.returncode}: {said}")
    finally:
        collector.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--certs", type=int, default=100_000)
    ap.add_argument("--format", default="json", choices=["json", "table"])
    ap.add_argument("--compare", default="/work/main/.venv", help="another checkout's venv to run side by side")
    ap.add_argument("--report", action="store_true", help="the agent's report path (run --once) instead of scan")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bundle = tmp / "big.pem"
        t0 = time.perf_counter()
        write_bulk_pem(bundle, ns.certs)
        print(f"{ns.certs} certificates, {bundle.stat().st_size / 2**20:.1f} MB PEM, made in "
              f"{time.perf_counter() - t0:.1f}s")
        if ns.report:
            report(bundle, tmp, ns.compare)
            return 0
        cfg = tmp / "agent.toml"
        cfg.write_text(f'[agent]\ndata_dir = "{tmp / "data"}"\nhostname = "bench"\nmax_file_size = "1GB"\n'
                       f'[[store]]\nname = "big"\ntype = "pem"\npaths = ["{bundle}"]\n')
        cfg.chmod(0o600)
        agents = [("this checkout", str(Path(sys.executable).parent / "certfleet-agent"))]
        other = Path(ns.compare) / "bin" / "certfleet-agent"
        if ns.compare and other.exists() and Path(ns.compare).resolve() != Path(sys.prefix).resolve():
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
