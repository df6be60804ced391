#!/usr/bin/env python3
"""TLS endpoint scanning: 200 loopback endpoints, and the agent's idle CPU between scans (a benchmark, not a test).

    .venv/bin/python bench/bench_endpoints.py [--endpoints 200] [--concurrency 64] [--idle 30]

1. Starts one server process (asyncio) that serves ``--endpoints`` TLS ports on
   four 127.x addresses with four distinct certificates (each with its
   intermediate), then times
   - ``probe_many`` over all of them (handshake + chain validation), and
   - a full ``EndpointSource.collect`` pass (real psutil listener discovery,
     narrowed to the bench addresses; SNI names from a PEM store holding two
     certificates' SANs, so every endpoint is probed once more per name).
2. Starts a real collector (tests/e2e/harness.py, SQLite), enrolls an agent and
   runs ``certfleet-agent run`` (the service) with its default [endpoints]
   settings; after its first stored report, reads its CPU time with psutil over
   ``--idle`` seconds.

Targets (issue 5): 200 endpoints in under 10 s with concurrency; idle CPU under 1% of a core.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------- the server process

def serve(spec_path: str) -> None:
    """Serve TLS on every (ip, port, site) of the spec; print READY and the endpoints; run until stdin closes."""
    import ssl

    spec = json.loads(Path(spec_path).read_text())

    async def main() -> None:
        contexts = {}
        for d in {e["site"] for e in spec}:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(f"{d}/fullchain.pem", f"{d}/key.pem")
            contexts[d] = ctx

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1)
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                writer.close()

        out = []
        for e in spec:
            srv = await asyncio.start_server(handle, e["ip"], 0, ssl=contexts[e["site"]], backlog=256)
            out.append([e["ip"], srv.sockets[0].getsockname()[1], e["site"]])
        print("READY " + json.dumps(out), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)     # until the bench closes our stdin

    asyncio.run(main())


def make_sites(work: Path, n: int) -> list[Path]:
    from tests.helpers.install_sites import TestCA, openssl_key, public_key_of

    ca = TestCA("Certfleet Bench")
    sites = []
    for i in range(n):
        d = work / f"site{i}"
        d.mkdir(parents=True)
        key = openssl_key(d / "key.pem")
        issued = ca.issue(public_key_of(key), (f"svc{i}.bench.test", f"alt{i}.bench.test"))
        (d / "cert.pem").write_bytes(issued.cert_pem)
        (d / "fullchain.pem").write_bytes(issued.cert_pem + issued.chain_pem())
        sites.append(d)
    (work / "ca.pem").write_bytes(ca.root_pem)
    return sites


def start_servers(work: Path, count: int, sites: list[Path]) -> tuple[subprocess.Popen, list[tuple[str, int]], str]:
    prefix = f"127.{60 + os.getpid() % 150}.{os.getpid() // 150 % 250}."
    spec = [{"ip": f"{prefix}{1 + i % 4}", "site": str(sites[i % len(sites)])} for i in range(count)]
    (work / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "spec.json")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        sys.exit(f"the TLS server process did not start: {line!r}")
    return proc, [(ip, port) for ip, port, _ in json.loads(line[6:])], prefix


# ---------------------------------------------------------------- part 1: probing

def bench_probe(work: Path, endpoints: int, concurrency: int, runs: int) -> None:
    from agent.config import load_config
    from agent.endpoints.survey import Target, probe_many
    from agent.discovery.listeners import local_listeners
    from agent.sources.endpoints import EndpointSource

    sites = make_sites(work, 4)
    proc, eps, prefix = start_servers(work, endpoints, sites)
    try:
        targets = [Target(ip, port) for ip, port in eps]
        ca = str(work / "ca.pem")
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            obs = probe_many(targets, concurrency=concurrency, timeout=5, ca_file=ca)
            times.append(time.perf_counter() - t0)
            ok = sum(o.ok for o in obs)
            valid = sum(o.chain_valid for o in obs)
            if ok != len(targets):
                bad = next(o for o in obs if not o.ok)
                print(f"  warning: {len(targets) - ok} endpoints gave no certificate, e.g. {bad.detail}")
        print(f"probe_many: {len(targets)} endpoints, concurrency {concurrency}: median {statistics.median(times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)}); {ok} TLS, {valid} chains valid; "
              f"{len(targets) / statistics.median(times):.0f} handshakes/s")
        fps = len({o.fingerprint for o in obs})
        print(f"  distinct leaf certificates: {fps}; mean handshake {statistics.mean(o.seconds for o in obs) * 1000:.1f} ms")

        cfg_dir = work / "agent"
        cfg_dir.mkdir()
        (cfg_dir / "agent.toml").write_text(
            f'[agent]\ndata_dir = "{cfg_dir / "data"}"\n\n[[store]]\nname = "web"\ntype = "pem"\n'
            f'paths = ["{sites[0]}/cert.pem", "{sites[1]}/cert.pem"]\n\n'
            f'[endpoints]\nca_file = "{ca}"\nconcurrency = {concurrency}\ntimeout = 5\n')
        cfg = load_config(cfg_dir / "agent.toml")
        src = EndpointSource(cfg, listeners=lambda: [x for x in local_listeners() if x.ip.startswith(prefix)])
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            res = src.collect(dt.datetime.now(dt.timezone.utc))
            times.append(time.perf_counter() - t0)
        leaves = sum(1 for e in res.entries if e.key.chain_index == 0)
        print(f"EndpointSource.collect: {len(eps)} listeners x (no SNI + 4 SNI names from the stores) = "
              f"{len(eps) * 5} handshakes: median {statistics.median(times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)}); {leaves} endpoint locations, "
              f"{len(res.entries)} with chains, {len(res.problems)} problems")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


# ---------------------------------------------------------------- part 2: idle CPU of the real agent

def bench_idle(work: Path, idle_seconds: float) -> None:
    import psutil

    from tests.e2e.harness import BIN, Agent, Collector

    pems = work / "pems"
    pems.mkdir(parents=True)
    for i, d in enumerate(make_sites(work / "idle-sites", 3)):
        (pems / f"{i}.pem").write_bytes((d / "fullchain.pem").read_bytes())
    collector = Collector(work / "collector")
    collector.start()
    proc = None
    try:
        assert collector.init_admin().code == 0
        agent = Agent(work / "agent-svc", f'[[store]]\nname = "bench"\ntype = "pem"\npaths = ["{pems}/*.pem"]\n',
                      endpoints_toml="")        # the defaults: probe every port this host listens on
        agent.write_config()
        enrolled = agent.enroll(collector, collector.token())
        if enrolled.code != 0:
            sys.exit(f"enroll failed: {enrolled.err}")
        log = open(work / "agent.log", "w")
        proc = subprocess.Popen([str(BIN / "certfleet-agent"), "run", "--config", str(agent.config)],
                                stdout=log, stderr=subprocess.STDOUT)
        state = agent.workdir / "data" / "state.json"
        t0 = time.monotonic()
        while not state.exists():
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                sys.exit(f"the agent made no report: {(work / 'agent.log').read_text()[-2000:]}")
            time.sleep(0.1)
        first_report = time.monotonic() - t0
        time.sleep(2)                                        # let the first report's tail settle
        p = psutil.Process(proc.pid)
        c0, w0 = p.cpu_times(), time.monotonic()
        time.sleep(idle_seconds)
        c1, w1 = p.cpu_times(), time.monotonic()
        busy = (c1.user - c0.user) + (c1.system - c0.system)
        rss = p.memory_info().rss / 2**20
        threads = p.num_threads()
        print(f"agent service: first report stored {first_report:.1f} s after start; then idle for {w1 - w0:.0f} s: "
              f"CPU {busy:.3f} s = {100 * busy / (w1 - w0):.2f}% of a core; RSS {rss:.0f} MB; {threads} threads")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        collector.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement (0: skip)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    with tempfile.TemporaryDirectory(prefix="certfleet-bench-endpoints-") as tmp:
        work = Path(tmp)
        bench_probe(work / "probe", args.endpoints, args.concurrency, args.runs)
        if args.idle > 0:
            bench_idle(work / "idle", args.idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
