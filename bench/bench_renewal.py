#!/usr/bin/env python3
"""Renewal speed, end to end (a benchmark, not a test).

    .venv/bin/python bench/bench_renewal.py [--part single|fleet|all] [--rounds 5]
        [--agents 100] [--certs-per-agent 10] [--backend sqlite|postgresql|both]
        [--queue online|offline|both] [--timeout 600]

Part 1, "single": one renewal through the collector's internal CA onto a real nginx.
    A real collector (subprocess, SQLite) with an internal CA and a template, Debian's
    nginx on 127.0.0.1 serving an old self-signed certificate from files, and a real
    agent enrolled next to it and running as a service (`certfleet-agent run`) with the
    reload action `nginx -s reload` and a TLS verify endpoint. Once the agent's first
    report is in the registry, `certfleet renew FP --wait` is timed from process start to
    exit (the job verified), --rounds times; each round renews the certificate the
    previous round installed (its job's new_fingerprint, once the registry has it).
    Printed: min/median/max of the command's wall time; the median of the agent's reload
    step (from the job's result steps, `nginx -s reload` itself, reported separately as
    issue 3 asks) and of the total minus the reload; and, for orientation, the job's own
    time in the registry (requested -> verified, from its events) and the CLI's bare
    start-up cost (`certfleet --version`). A real TLS handshake checks after every round
    that nginx serves the new fingerprint.
    Target (issue 3): under 3 s from command to verified, excluding the reload.

Part 2, "fleet": 1,000 renewals queued across 100 simulated agents.
    One collector (SQLite, or a fresh PostgreSQL database made for the run and dropped
    after), 100 agents enrolled for real through the Enrollment RPC with tokens from the
    admin API (in process, with the identity from init-admin), simulated in this process
    on grpc.aio (bench/sim_fleet.py): each reports a full inventory of 10 distinct
    certificates (host-NN-M.example.test at fake PEM paths) and opens its command stream,
    answering PrepareRenewal with a real key and CSR and InstallCertificate with
    `verified` and the received certificate's fingerprint. Then 1,000 Renew calls (one per
    location) go through the admin API and the clock runs until the registry holds no
    running job. Checked through ListJobs, per agent: every job final and verified,
    exactly one job per location, job ids unique, served = new fingerprint = what the
    agent received, no retries. Printed: time to queue, time to all final, throughput
    (renewals/s), per-state counts, and commands the agents received more than once; also
    the collector's CPU (idle with the streams open, and while renewing) and the time from
    an agent's CSR to its install command. With --queue offline the renewals are queued
    while no agent is connected (commands wait in the registry) and the clock starts when
    the agents connect.

Everything binds to 127.0.0.1 and is bounded by --timeout; every process started here
is stopped at the end. Machine facts (cores) are printed first.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from bench import sim_fleet  # noqa: E402
from certfleet.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402
from collector.config.client import load_client_config  # noqa: E402
from tests.e2e.harness import BIN, Agent, Collector  # noqa: E402
from tests.helpers.install_sites import Nginx, nginx_binary, served_fingerprint  # noqa: E402

COLLECTOR_TABLES = """
[limits]
enroll_per_minute = 100000     # the bench enrolls its whole fleet from one address at once

[issuers.internal]
type = "internal_ca"
common_name = "certfleet bench CA"

[templates.web]
issuer = "internal"
key_type = "ec"
curve = "P-256"
validity = "90d"
key_usage = ["digital_signature"]
extended_key_usage = ["serverAuth"]
allowed_san_patterns = ["*.example.test"]

[renewal]
default_template = "web"
"""

FINAL = {"verified", "failed", "rolled_back", "cancelled"}
RUNNING = ("requested", "key_pending", "csr_received", "issued", "installing", "stuck")  # forward order
PG_ADMIN_URL = os.environ.get("CERTFLEET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class BenchError(Exception):
    pass


def wait_for(pred, timeout: float, what: str, every: float = 0.2):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def fmt(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    ticks = [int(x) for x in pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks[:8]) - idle) / hz, sum(ticks[:8]) / hz


def tidy(work: pathlib.Path, ok: bool, label: str) -> None:
    """Remove a run's working directory after a good run; keep it (and say where) for a look otherwise."""
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"[{label}] kept for inspection (logs inside): {work}")


def parse_iso(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------------------------
# Part 1: one renewal onto nginx, timed from the CLI


def old_site(d: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """An old self-signed certificate and its key for www.example.test, made by openssl."""
    d.mkdir(parents=True)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "20", "-subj", "/CN=www.example.test",
         "-addext", "subjectAltName=DNS:www.example.test"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def agent_stores(site: pathlib.Path, nginx: Nginx) -> str:
    return (
        '[[store]]\nname = "web"\ntype = "pem"\n'
        f'paths = ["{site}/*.pem"]\n'
        'reload = "nginx"\n'
        f'verify = [{{ host = "127.0.0.1", port = {nginx.port}, sni = "www.example.test" }}]\n'
        'verify_timeout = "10s"\n\n'
        f"[reload.nginx]\ncommand = {json.dumps(nginx.reload_command)}\n"
    )


def registry_fingerprint(c: Collector, hostname: str) -> str:
    r = c.cli("certs", "list", "--host", hostname, "--format", "json")
    if r.code != 0:
        return ""
    held = [x for x in r.json() if any(loc["path"].endswith("cert.pem") and loc["status"] == "present"
                                       for loc in x["locations"])]
    return held[0]["fingerprint_sha256"] if len(held) == 1 else ""


def bench_single(rounds: int, timeout: float) -> bool:
    binary = nginx_binary()
    if binary is None:
        print("[single] skipped: nginx is not installed (packaging/dev/setup.sh installs it)")
        return True
    started = time.monotonic()
    work = pathlib.Path(tempfile.mkdtemp(prefix="certfleet-bench-renewal-"))
    cert, key = old_site(work / "site")
    nginx = Nginx(binary, work / "nginx", cert, key)
    c = Collector(work / "collector", extra_tables=COLLECTOR_TABLES)
    service: subprocess.Popen | None = None
    svc_log = None
    ok = False
    try:
        c.start()
        if c.init_admin().code != 0:
            raise BenchError("init-admin failed")
        agent = Agent(work / "agent", agent_stores(work / "site", nginx))
        agent.write_config(hostname="web-01")
        # a long scan interval: the agent reports at start and right after each install anyway
        agent.config.write_text(agent.config.read_text().replace("[agent]\n", '[agent]\nscan_interval = "5m"\n', 1))
        r = agent.enroll(c, c.token())
        if r.code != 0:
            raise BenchError(f"enroll failed: {r.err}")
        svc_log = open(agent.workdir / "agent.log", "a")
        service = subprocess.Popen([str(BIN / "certfleet-agent"), "run", "--config", str(agent.config)],
                                   stdout=svc_log, stderr=svc_log)
        current = wait_for(lambda: registry_fingerprint(c, "web-01"), 30, "the agent's first report")
        if served_fingerprint(nginx.port) != current:
            raise BenchError("nginx does not serve the certificate the registry holds")

        t0 = time.perf_counter()
        if subprocess.run([str(BIN / "certfleet"), "--version"], capture_output=True, env=c.env).returncode != 0:
            raise BenchError("certfleet --version failed")
        cli_startup = time.perf_counter() - t0

        print(f"[single] nginx on 127.0.0.1:{nginx.port}; agent running; {rounds} renewals of the certificate "
              "it serves, each timed from `certfleet renew FP --wait` start to exit")
        print(f"[single] {'round':>5} {'total':>9} {'reload':>9} {'no-reload':>9} {'in job':>9}  job")
        rows = []
        for i in range(rounds):
            if time.monotonic() - started > timeout:
                raise BenchError(f"out of time after {i} rounds")
            t0 = time.perf_counter()
            p = subprocess.run([str(BIN / "certfleet"), "renew", current[:16], "--wait", "--timeout", "60"],
                               capture_output=True, text=True, env=c.env, timeout=90)
            total = time.perf_counter() - t0
            if p.returncode != 0 or "verified" not in p.stdout:
                raise BenchError(f"round {i + 1}: renew exited {p.returncode}: {p.stdout} {p.stderr}")
            job_id = p.stdout.split()[1]
            job = c.cli("jobs", "show", job_id, "--format", "json").json()
            if job["state"] != "verified":
                raise BenchError(f"round {i + 1}: job {job_id} is {job['state']}")
            new = job["new_fingerprint"]
            served = served_fingerprint(nginx.port)
            if served != new:
                raise BenchError(f"round {i + 1}: nginx serves {served[:16]}, the job installed {new[:16]}")
            steps = (job.get("result") or {}).get("steps") or []
            reload_s = sum(s["seconds"] for s in steps if s["step"] == "reload")
            verify_s = sum(s["seconds"] for s in steps if s["step"] == "verify")
            events = job["events"]
            in_job = (parse_iso(events[-1]["at"]) - parse_iso(events[0]["at"])).total_seconds()
            rows.append({"total": total, "reload": reload_s, "no_reload": total - reload_s, "in_job": in_job,
                         "verify": verify_s})
            print(f"[single] {i + 1:>5} {fmt(total):>9} {fmt(reload_s):>9} {fmt(total - reload_s):>9} "
                  f"{fmt(in_job):>9}  {job_id[:8]} {' > '.join(e['to'] for e in events)}")
            # the next round renews what this one installed, once the agent has reported it
            wait_for(lambda: registry_fingerprint(c, "web-01") == new, 30, "the registry to hold the new certificate")
            current = new

        totals = [r["total"] for r in rows]
        med = statistics.median
        no_reload = med(r["no_reload"] for r in rows)
        print(f"[single] renew --wait, command start to exit (verified), {len(rows)} rounds: "
              f"min {fmt(min(totals))}, median {fmt(med(totals))}, max {fmt(max(totals))}")
        print(f"[single]   nginx reload step (agent's result steps): median {fmt(med(r['reload'] for r in rows))}; "
              f"verify step (handshakes until the new certificate is served steadily): "
              f"median {fmt(med(r['verify'] for r in rows))}")
        print(f"[single]   total minus reload: median {fmt(no_reload)} "
              f"(target < 3 s: {'met' if no_reload < 3 else 'NOT met'}); max {fmt(max(r['no_reload'] for r in rows))}")
        print(f"[single]   job requested -> verified in the registry: median {fmt(med(r['in_job'] for r in rows))}; "
              f"CLI start-up alone (certfleet --version): {fmt(cli_startup)}")
        ok = True
        return no_reload < 3
    finally:
        if service is not None and service.poll() is None:
            service.terminate()
            try:
                service.wait(10)
            except subprocess.TimeoutExpired:
                service.kill()
        if svc_log is not None:
            svc_log.close()
        if c.proc is not None:
            c.stop()
        nginx.stop()
        tidy(work, ok, "single")


# ---------------------------------------------------------------------------------------------
# Part 2: 1,000 renewals across 100 simulated agents


def pg_database() -> tuple[str, callable]:
    """A fresh PostgreSQL database for the run and a function that drops it (as bench/bench_e2e.py)."""
    import uuid

    import sqlalchemy as sa

    name = "certfleet_bench_" + uuid.uuid4().hex[:8]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def admin_channel(c: Collector) -> grpc.aio.Channel:
    """The admin API in process, with the identity init-admin wrote (as the CLI opens it)."""
    cfg = load_client_config(str(c.admin_config))
    creds = grpc.ssl_channel_credentials(root_certificates=cfg.ca.read_bytes(), private_key=cfg.key.read_bytes(),
                                         certificate_chain=cfg.certificate.read_bytes())
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if cfg.server_name:
        options.append(("grpc.ssl_target_name_override", cfg.server_name))
    return grpc.aio.secure_channel(cfg.collector, creds, options=options)


async def bounded(n: int, coros) -> list:  # noqa: ANN001
    """Run coroutines with at most ``n`` at a time, results in order."""
    sem = asyncio.Semaphore(n)

    async def one(coro):  # noqa: ANN001, ANN202
        async with sem:
            return await coro

    return await asyncio.gather(*(one(x) for x in coros))


async def running_jobs(admin: admin_pb2_grpc.AdminServiceStub) -> int:
    """How many jobs are not final (up to one per running state); states asked in forward order, so a
    job moving forward during the sweep is still seen."""
    n = 0
    for state in RUNNING:
        r = await admin.ListJobs(admin_pb2.ListJobsRequest(state=state, limit=1), timeout=60)
        n += len(r.jobs)
    return n


async def fleet_run(c: Collector, n_agents: int, per_agent: int, deadline: float, label: str, queue: str) -> bool:
    ca_pem = load_client_config(str(c.admin_config)).ca.read_bytes()
    channel = admin_channel(c)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    agents: list[sim_fleet.SimAgent] = []
    stop = asyncio.Event()
    streams: list[asyncio.Task] = []

    try:
        # enroll: a token per agent from the admin API, then the Enrollment RPC with a key made here
        t0 = time.perf_counter()
        tokens = await bounded(8, (admin.CreateEnrollmentToken(
            admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=3600, note="bench"), timeout=60) for _ in range(n_agents)))
        agents = await bounded(8, (sim_fleet.enroll(tok.enrollment_endpoint, ca_pem, tok.token, f"host-{i:02d}")
                                   for i, tok in enumerate(tokens)))
        t_enroll = time.perf_counter() - t0
        # inventories: per_agent distinct certificates per agent, one shared key (cheap to make)
        t0 = time.perf_counter()
        key = ec.generate_private_key(ec.SECP256R1())
        for a in agents:
            a.inventory = sim_fleet.make_inventory(a.hostname, per_agent, key)
            a.open()
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        acks = await bounded(8, (a.report() for a in agents))
        t_report = time.perf_counter() - t0
        if not all(ack.stored for ack in acks) or sum(ack.locations_upserted for ack in acks) != n_agents * per_agent:
            raise BenchError(f"reports not all stored: {[ack.message for ack in acks if not ack.stored][:3]}")
        print(f"[fleet:{label}] {n_agents} agents enrolled in {fmt(t_enroll)}; {n_agents * per_agent} certificates "
              f"made in {fmt(t_make)} and reported in {fmt(t_report)}")

        async def connect() -> None:
            streams.extend(asyncio.create_task(a.serve(stop)) for a in agents)
            try:
                await asyncio.wait_for(asyncio.gather(*(a.connected.wait() for a in agents)), 60)
            except asyncio.TimeoutError:
                raise BenchError("the agents' command streams did not open in 60 s") from None

        if queue == "online":
            await connect()
            # what the open streams cost with nothing to do (each polls the registry for commands)
            idle0 = proc_cpu(c.proc.pid)
            await asyncio.sleep(5)
            print(f"[fleet:{label}] command streams open; collector CPU with {n_agents} idle streams: "
                  f"{100 * (proc_cpu(c.proc.pid) - idle0) / 5:.0f}% of one core")

        # queue one renewal per location through the admin API, as fast as the API takes them
        targets = [(a, cert) for a in agents for cert in a.inventory]
        cpu0 = (proc_cpu(c.proc.pid), time.process_time(), *machine_cpu())
        t_start = time.perf_counter()
        responses = await bounded(16, (admin.Renew(admin_pb2.RenewRequest(
            fingerprint_prefix=cert.fingerprint, agent_id=a.agent_id, store_type="pem", path=cert.path,
            reason="bench"), timeout=120) for a, cert in targets))
        t_queued = time.perf_counter() - t_start
        per_call = Counter(len(r.jobs) for r in responses)
        print(f"[fleet:{label}] {len(targets)} renewals queued in {fmt(t_queued)} "
              f"({len(targets) / t_queued:.0f} Renew calls/s){' while the agents were offline' if queue == 'offline' else ''}; "
              f"jobs per call: {dict(per_call)}")
        if queue == "offline":
            # the jobs wait in the registry; the clock restarts when the agents connect
            cpu0 = (proc_cpu(c.proc.pid), time.process_time(), *machine_cpu())
            t_start = time.perf_counter()
            await connect()
            print(f"[fleet:{label}] command streams open; clock started at connect")

        # until the registry holds no running job. Polls are light while the agents still have
        # installs to answer, and frequent once they have answered all (the end is then near).
        last_note = last_poll = time.perf_counter()
        while True:
            await asyncio.sleep(0.1)
            answered = sum(len(a.answered) for a in agents)
            if answered < len(targets) and time.perf_counter() - last_poll < 1.0:
                continue
            last_poll = time.perf_counter()
            if time.monotonic() > deadline:   # say where everything stands before giving up
                print(f"[fleet:{label}] OUT OF TIME after {last_poll - t_start:.0f} s; the registry now:")
                await fleet_check(admin, agents, targets, responses, t_queued, last_poll - t_start, label, queue)
                raise BenchError("out of time: not all jobs reached a final state")
            if await running_jobs(admin) == 0:
                break
            if last_poll - last_note > 10:
                last_note = last_poll
                print(f"[fleet:{label}]   {last_note - t_start:.0f} s: agents answered {answered}/{len(targets)} installs")
        t_final = time.perf_counter() - t_start
        cpu1 = (proc_cpu(c.proc.pid), time.process_time(), *machine_cpu())
        busy, total = cpu1[2] - cpu0[2], cpu1[3] - cpu0[3]
        print(f"[fleet:{label}]   CPU while renewing: collector {cpu1[0] - cpu0[0]:.1f} s, this process (simulated "
              f"agents + admin client) {cpu1[1] - cpu0[1]:.1f} s, in {t_final:.1f} s wall; the machine's "
              f"{os.cpu_count()} cores were {100 * busy / total:.0f}% busy (everything running on it)")
        return await fleet_check(admin, agents, targets, responses, t_queued, t_final, label, queue)
    finally:
        stop.set()
        if streams:
            await asyncio.wait(streams, timeout=10)
        for a in agents:
            await a.close()
        await channel.close()


async def fleet_check(admin, agents, targets, responses, t_queued: float, t_final: float, label: str,  # noqa: ANN001
                      queue: str) -> bool:
    """Everything through ListJobs, per agent (so extra jobs would show): final, verified, one per location."""
    problems: list[str] = []
    by_agent = await bounded(8, (admin.ListJobs(admin_pb2.ListJobsRequest(agent_id=a.agent_id, limit=1000), timeout=60)
                                 for a in agents))
    jobs = [j for r in by_agent for j in r.jobs]
    states = Counter(j.state for j in jobs)
    ids = Counter(j.job_id for j in jobs)
    locations = Counter((j.agent_id, j.store_type, j.path, j.alias, j.chain_index) for j in jobs)
    expected = {(a.agent_id, "pem", cert.path, "", 0) for a, cert in targets}
    queued_ids = [j.job_id for r in responses for j in r.jobs]
    if len(jobs) != len(targets):
        problems.append(f"{len(jobs)} jobs in the registry for {len(targets)} renewals")
    if any(n > 1 for n in ids.values()):
        problems.append(f"{sum(n > 1 for n in ids.values())} job ids appear more than once")
    if set(locations) != expected:
        problems.append(f"{len(expected - set(locations))} locations without a job, "
                        f"{len(set(locations) - expected)} jobs at unexpected locations")
    if any(n > 1 for n in locations.values()):
        problems.append(f"{sum(n > 1 for n in locations.values())} locations with more than one job")
    if len(set(queued_ids)) != len(targets) or set(queued_ids) != set(ids):
        problems.append("the job ids Renew returned are not the jobs in the registry")
    if states.get("verified", 0) != len(targets):
        problems.append(f"not all verified: {dict(states)}")
    installed = {jid: fp for a in agents for jid, fp in a.installed.items()}
    wrong = [j.job_id for j in jobs if j.state == "verified"
             and not (j.served_fingerprint == j.new_fingerprint == installed.get(j.job_id))]
    if wrong:
        problems.append(f"{len(wrong)} verified jobs whose served/new fingerprint is not what the agent received")
    retried = sum(1 for j in jobs if j.attempts)
    if retried:
        problems.append(f"{retried} jobs needed retries")
    for a in agents:
        problems.extend(a.problems[:3])
    resent = Counter(kind for a in agents for (job, kind), n in a.commands.items() if n > 1)
    received = Counter(kind for a in agents for (job, kind) in a.commands)

    created = [j.created_at.ToDatetime() for j in jobs]
    finished = [j.finished_at.ToDatetime() for j in jobs if j.HasField("finished_at")]
    span = (max(finished) - min(created)).total_seconds() if finished and created else float("nan")
    n = len(targets)
    since = "the first Renew call" if queue == "online" else "the agents' connecting"
    n_final = sum(states.get(s, 0) for s in FINAL)
    if n_final == n:
        print(f"[fleet:{label}] all {n} jobs final after {fmt(t_final)} from {since} "
              f"(queueing took {fmt(t_queued)}): {n / t_final:.1f} renewals/s")
    else:
        print(f"[fleet:{label}] {n_final} of {n} jobs final after {fmt(t_final)} from {since}")
    print(f"[fleet:{label}]   registry's own span (first created_at -> last finished_at): {fmt(span)} "
          f"-> {n / span:.1f} renewals/s" + ("" if queue == "online" else " (includes the queueing and connecting)"))
    print(f"[fleet:{label}]   per-state counts (ListJobs per agent): {dict(sorted(states.items()))}; "
          f"{len(ids)} distinct job ids; {len(locations)} distinct locations; "
          f"commands received: {dict(received)}, received more than once: {dict(resent) or 'none'}")
    turn = sorted(t for a in agents for t in a.turnaround)
    if turn:
        slow = sum(t >= 1.5 for t in turn)
        print(f"[fleet:{label}]   collector turnaround, CSR sent -> install received (issue + command): "
              f"median {fmt(statistics.median(turn))}, p95 {fmt(turn[int(len(turn) * 0.95) - 1])}, "
              f"max {fmt(turn[-1])}; {slow} of {len(turn)} took >= 1.5 s")
    for p in problems:
        print(f"[fleet:{label}]   PROBLEM: {p}")
    if not problems:
        print(f"[fleet:{label}]   check: all verified, none lost, none duplicated")
    return not problems


def bench_fleet(backend: str, n_agents: int, per_agent: int, timeout: float, queue: str) -> bool:
    deadline = time.monotonic() + timeout
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"certfleet-bench-fleet-{backend}-"))
    url, drop = ("", lambda: None) if backend == "sqlite" else pg_database()
    c = Collector(work / "collector", database_url=url, extra_tables=COLLECTOR_TABLES)
    ok = False
    try:
        c.start()
        if c.init_admin().code != 0:
            raise BenchError("init-admin failed")
        run = fleet_run(c, n_agents, per_agent, deadline, f"{backend}/{queue}", queue)
        try:
            ok = asyncio.run(asyncio.wait_for(run, timeout + 60))   # a backstop: fleet_run keeps its own deadline
            return ok
        except asyncio.TimeoutError:
            raise BenchError(f"fleet ({backend}, {queue}) did not finish in time (--timeout {timeout:.0f})") from None
    finally:
        if c.proc is not None:
            c.stop()
        drop()
        tidy(work, ok, f"fleet:{backend}/{queue}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["single", "fleet", "all"], default="all")
    ap.add_argument("--rounds", type=int, default=5, help="single: renewals in a row (default 5)")
    ap.add_argument("--agents", type=int, default=100, help="fleet: simulated agents (default 100)")
    ap.add_argument("--certs-per-agent", type=int, default=10, help="fleet: certificates per agent (default 10)")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite",
                    help="fleet: registry database (default sqlite)")
    ap.add_argument("--queue", choices=["online", "offline", "both"], default="online",
                    help="fleet: queue the renewals while the agents' command streams are open (default), or "
                         "while they are offline and time from their connecting")
    ap.add_argument("--timeout", type=float, default=600, help="seconds each part may take at most (default 600)")
    ns = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}); python {sys.version.split()[0]}")
    ok = True
    try:
        if ns.part in ("single", "all"):
            ok &= bench_single(ns.rounds, ns.timeout)
        if ns.part in ("fleet", "all"):
            for backend in (["sqlite", "postgresql"] if ns.backend == "both" else [ns.backend]):
                for queue in (["online", "offline"] if ns.queue == "both" else [ns.queue]):
                    ok &= bench_fleet(backend, ns.agents, ns.certs_per_agent, ns.timeout, queue)
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
