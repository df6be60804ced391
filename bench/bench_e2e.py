#!/usr/bin/env python3
"""End to end: an enrolled agent's first sync of N PEM certificates into the registry (a benchmark, not a test).

    .venv/bin/python bench/bench_e2e.py [--files 20000] [--backend sqlite|postgresql|both]

For each backend: starts a real collector (subprocess), enrolls an agent, then
times `certfleet-agent run --once` (scan + stream + normalise + store, until
the collector acknowledges), an unchanged second run (a delta with no
certificate data), and `certfleet certs list --format csv` over everything.
Peak RSS of the agent process is reported too. PostgreSQL runs in a fresh
database made for the run and dropped after.

Target (issue 2): first sync of 20,000 certificates stored and normalised in
under 5 s on SQLite and on PostgreSQL; agent peak RSS < 100 MB.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_scan import generate  # noqa: E402
from tests.e2e.harness import Agent, Collector, run  # noqa: E402

PG_ADMIN_URL = os.environ.get("CERTFLEET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

AGENT_ONCE = (
    "import resource, sys\n"
    "from agent.cli.main import main\n"
    "rc = main(['run', '--config', sys.argv[1], '--once'])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


def timed_agent(agent: Agent) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", AGENT_ONCE, str(agent.config)], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"agent failed: {p.stderr}")
    rss = next(int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
    summary = next(line for line in p.stdout.splitlines() if "stored by the collector" in line)
    return elapsed, rss / 1024, summary


def pg_database() -> tuple[str, callable]:
    import sqlalchemy as sa

    name = "certfleet_bench_" + uuid.uuid4().hex[:8]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def bench(backend: str, certs_dir: Path, n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"certfleet-e2e-{backend}-"))
    url, drop = ("", lambda: None) if backend == "sqlite" else pg_database()
    collector = Collector(work / "collector", database_url=url)
    collector.start()
    try:
        assert collector.init_admin().code == 0
        agent = Agent(work / "agent", f'[[store]]\nname = "bench"\ntype = "pem"\npaths = ["{certs_dir}/**/*.pem"]\n')
        agent.write_config(hostname=f"bench-{backend}")
        r = agent.enroll(collector, collector.token())
        assert r.code == 0, r.err
        first, rss, summary = timed_agent(agent)
        second, rss2, summary2 = timed_agent(agent)
        t0 = time.perf_counter()
        r = run("certfleet", "certs", "list", "--format", "csv", "--host", f"bench-{backend}", env=collector.env)
        listed = time.perf_counter() - t0
        rows = r.out.count("\n") - 1
        print(f"[{backend}] first sync of {n} certificates (agent process start to acknowledgement): {first:.2f} s"
              f"  -> {n / first:,.0f} certificates/s; agent peak RSS {rss:.1f} MB")
        print(f"[{backend}]   {summary}")
        print(f"[{backend}] unchanged second sync: {second:.2f} s ({summary2.split(': ', 1)[1]})")
        print(f"[{backend}] certs list --format csv: {rows} rows in {listed:.2f} s")
        if rows != n:
            print(f"[{backend}] WARNING: expected {n} rows")
    finally:
        collector.stop()
        drop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ns = ap.parse_args()
    certs_dir = Path(tempfile.gettempdir()) / f"certfleet-bench-{ns.files}"
    took = generate(certs_dir, ns.files)
    if took:
        print(f"generated {ns.files} certificates in {took:.1f} s into {certs_dir}")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    for backend in (["sqlite", "postgresql"] if ns.backend == "both" else [ns.backend]):
        bench(backend, certs_dir, ns.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
