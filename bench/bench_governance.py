"""How fast the governance features answer on a large registry (a benchmark, not a test).

    .venv/bin/python bench/bench_governance.py [--certs 100000] [--agents 100] [--no-pg] [--no-sqlite]
                                               [--profile expiring|policy|notify] [--only expiring,policy,notify]

Fills a registry (a temporary SQLite file, and a fresh PostgreSQL database that is
dropped afterwards) with ``certs`` distinct certificates (small EC leaves signed by one
CA key, expiries spread over -30..+400 days; the DERs are cached in
$TMPDIR/certfleet-govbench-N.der and reused) at 3 locations each on 3 different agents
(``agents`` agents, each storing its share through one full report: begin_report,
add_upserts, finish), a few owners and assignment rules (host globs, a label rule and
some explicit assignments) so ownership resolves, and a policy document. Then measures:

- ``certfleet report expiring`` as a user runs it: the CLI command's own code
  (collector.cli.reports.cmd_report: the parameters the CLI sends, GetReport, the parts
  streamed in, the table rendered; its output captured) against the real ReportServicer
  in a separate process on the same database, over a loopback gRPC channel. Not included:
  the CLI's interpreter start and the mTLS handshake; the servicer's role check is a
  stand-in (in the collector it is one indexed admin-identity lookup). Timed: the default
  table (what the target is about), and for information ``--all`` (every row in the
  table), ``--format csv`` and ``--format html`` (every row), and the report build alone;
- a full policy evaluation (Registry.policies.evaluate_all): the first (stores every
  violation) and a second one (nothing new);
- a notification run that has nothing new to send (Notifier.run_once twice with one SMTP
  channel on a local aiosmtpd; the second is timed).

Targets (issue 4): expiring < 0.5 s, policy evaluation < 60 s, idle notification run < 5 s.
Report timings are the median of 3 runs after one warm-up run.
Filling is not timed (its time is printed for information).
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import os
import pstats
import socket
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from collector import reports  # noqa: E402
from collector.services.notifier import Notifier  # noqa: E402
from collector.config.notify import NotifySettings  # noqa: E402
from collector.registry import Registry  # noqa: E402
from collector.registry.types import HostFacts, LocationIn, LocationSelector, ReportHeaderIn  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)
PG_ADMIN_URL = os.environ.get("CERTFLEET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TARGETS = {"expiring": 0.5, "policy": 60.0, "notify": 5.0}
OWNERS = ("web", "payments", "platform", "data", "edge")
POLICY = """
[global]
min_rsa_bits = 2048
max_validity_days = 398
locked = ["min_rsa_bits"]

[[scope]]
environment = "prod"
max_validity_days = 90
"""


# -- data ---------------------------------------------------------------------------------

def certificates(n: int) -> list[bytes]:
    """``n`` distinct DER leaves (cached in $TMPDIR); not_after spread over NOW-30d .. NOW+400d."""
    cache = Path(tempfile.gettempdir()) / f"certfleet-govbench-{n}.der"
    if cache.exists():
        data, out, i = cache.read_bytes(), [], 0
        while i < len(data):
            (k,) = struct.unpack_from(">I", data, i)
            out.append(data[i + 4:i + 4 + k])
            i += 4 + k
        if len(out) == n:
            return out
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    t = time.perf_counter()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench Corp"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Bench Governance CA")])
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(64)]
    sha = hashes.SHA256()
    out = []
    for i in range(n):
        cn = f"svc{i:06d}.bench.example.com"
        days = -30 + (i * 7919) % 431            # -30 .. +400, well mixed
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name).public_key(keys[i % len(keys)]).serial_number(i + 1)
            .not_valid_before(NOW + dt.timedelta(days=days - 200)).not_valid_after(NOW + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(ca_key, sha)
        )
        out.append(cert.public_bytes(Encoding.DER))
    cache.write_bytes(b"".join(struct.pack(">I", len(d)) + d for d in out))
    print(f"generated {n} certificates in {time.perf_counter() - t:.1f} s (cached in {cache})")
    return out


def agent_locations(ders: list[bytes], fps: list[str], agent: int, agents: int) -> list[LocationIn]:
    """Agent ``agent`` holds every certificate i with agent in {i, i+33, i+67} mod agents (3 places each)."""
    offsets = (0, agents // 3, 2 * agents // 3)
    out = []
    for k, off in enumerate(offsets):
        start = (agent - off) % agents
        for i in range(start, len(ders), agents):
            env = ("prod", "test", "staging")[i % 3]
            out.append(LocationIn(
                store_type="pem", path=f"/etc/ssl/site{i:06d}/cert{k}.pem", alias="", chain_index=0, der=ders[i],
                fingerprint=fps[i], has_private_key=True, key_encrypted=False, key_match="matches",
                entry_type="certificate", file_owner="root", file_group="ssl-cert", file_mode=0o640,
                file_mtime=NOW - dt.timedelta(hours=1), labels={"environment": env, "service": f"svc{i % 50}"},
            ))
    return out


def fill(reg: Registry, ders: list[bytes], fps: list[str], agents: int) -> None:
    t = time.perf_counter()
    for a in range(agents):
        token = f"{a:064x}"
        host = f"node{a:03d}.bench.example.com"
        reg.create_token(token, NOW + dt.timedelta(hours=1), "bench", NOW)
        reg.enroll_agent(token, f"agent-{a:03d}", HostFacts(hostname=host, os="linux"), "1",
                         NOW + dt.timedelta(days=30), NOW)
        locs = agent_locations(ders, fps, a, agents)
        txn = reg.begin_report(f"agent-{a:03d}", ReportHeaderIn(
            report_id=f"r{a}", full=True, sequence=1, base_sequence=0, host=HostFacts(hostname=host, os="linux")), NOW)
        for i in range(0, len(locs), 1000):
            txn.add_upserts(locs[i:i + 1000])
        txn.finish()
        if a % 10 == 9:
            print(f"  ... {a + 1}/{agents} agents stored ({time.perf_counter() - t:.0f} s)", flush=True)
    o = reg.owners
    for name in OWNERS:
        o.create_owner(name, NOW, contacts=[f"{name}@example.com"])
    per = max(1, agents // len(OWNERS))
    for k, name in enumerate(OWNERS):          # node000-019 -> web, node020-039 -> payments, ...
        lo = k * per
        for j in range(per // 10 or 1):
            o.add_rule(f"{name}-hosts-{j}", NOW, owner=name, host=f"node0{(lo // 10) + j:1d}[0-9].bench.example.com")
    o.add_rule("prod-critical", NOW, criticality="high", labels={"environment": "prod"})
    o.add_rule("svc1-service", NOW, service="billing", labels={"service": "svc1"})
    for i in range(0, len(fps), max(1, len(fps) // 200)):    # 200 explicit certificate assignments
        o.assign(fps[i], NOW, owner="edge", reason="bench")
    for i in range(1, 50):                                  # and 49 location ones
        o.assign(fps[i], NOW, owner="data", where=LocationSelector(path=f"/etc/ssl/site{i:06d}/cert0.pem"),
                 reason="bench")
    reg.policies.set_policy(POLICY, NOW, actor="bench")
    print(f"  filled in {time.perf_counter() - t:.0f} s", flush=True)


# -- measurements -------------------------------------------------------------------------------

def timed(fn: Callable[[], Any], profile: bool = False, label: str = "") -> tuple[float, Any]:
    prof = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    r = fn()
    if prof:
        prof.disable()
    el = time.perf_counter() - t
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(35)
        print(f"--- profile: {label} ---\n{s.getvalue()}")
    return el, r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        return "250 OK"


def mark(el: float, what: str) -> str:
    return f"{'ok' if el < TARGETS[what] else 'MISSED'} (target < {TARGETS[what]:g} s)"


def measure(label: str, url: str, ders: list[bytes], fps: list[str], agents: int, profile: str,
            only: frozenset[str] = frozenset(TARGETS)) -> None:
    print(f"{label}: filling {len(ders)} certificates x 3 locations on {agents} agents", flush=True)
    with Registry.open(url) as reg:
        fill(reg, ders, fps, agents)
        if reg.engine.dialect.name == "postgresql":
            # A production PostgreSQL analyses freshly loaded tables on its own (autovacuum); the test
            # server here runs with autovacuum off, so do once what autovacuum would have done.
            with reg.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
            print(f"{label}: ANALYZE after loading (autovacuum is off on this server)", flush=True)
        now = NOW + dt.timedelta(hours=1)
        lines: list[str] = []
        if "expiring" in only:
            lines += measure_expiring(reg, url, now, profile)
        if "policy" in only:
            lines += measure_policy(reg, now, profile)
        if "notify" in only:
            lines += measure_notify(reg, now, profile)
    print(f"{label}:")
    print("\n".join(lines), flush=True)


def measure_expiring(reg: Registry, url: str, now: dt.datetime, profile: str) -> list[str]:
    """certfleet report expiring, as a user runs it (see the module doc)."""
    cli = cli_expiring(url, now)
    try:
        t_default, out_default = cli(["report", "expiring"])
        t_all, out_all = cli(["report", "expiring", "--all"])
        t_csv, out_csv = cli(["report", "expiring", "--format", "csv"])
        t_html, out_html = cli(["report", "expiring", "--format", "html"])
    finally:
        cli.close()
    params = cli_params(["report", "expiring"])
    reports.build(reg, "expiring", params, now)          # warm-up (imports, caches)
    tb, rep = timed(lambda: reports.build(reg, "expiring", params, now), profile == "expiring", "expiring")
    shown = sum(len(s.rows) for s in rep.sections if s.title != "By owner")
    counted = sum(v for k, v in rep.summary if k.endswith(": locations"))
    return [
        f"  report expiring        {t_default * 1000:8.0f} ms  (CLI default table: {counted} locations counted, "
        f"{shown} detail rows shown, {len(out_default)} chars) {mark(t_default, 'expiring')}",
        f"    (build alone         {tb * 1000:8.0f} ms, in the bench process)",
        f"    --all                {t_all * 1000:8.0f} ms  (every row in the table, {len(out_all)} chars; information)",
        f"    --format csv         {t_csv * 1000:8.0f} ms  ({len(out_csv)} chars; information)",
        f"    --format html        {t_html * 1000:8.0f} ms  ({len(out_html)} chars; information)",
    ]


def measure_policy(reg: Registry, now: dt.datetime, profile: str) -> list[str]:
    tp1, s1 = timed(lambda: reg.policies.evaluate_all(now), profile == "policy", "policy (first)")
    tp2, s2 = timed(lambda: reg.policies.evaluate_all(now + dt.timedelta(minutes=5)))
    return [
        f"  policy eval (first)    {tp1:8.1f} s   ({s1.certificates} certs, {s1.locations} locations, "
        f"{s1.new} new violations) {mark(tp1, 'policy')}",
        f"  policy eval (again)    {tp2:8.1f} s   ({s2.still} still, {s2.new} new, {s2.cleared} cleared) "
        f"{mark(tp2, 'policy')}",
    ]


def measure_notify(reg: Registry, now: dt.datetime, profile: str) -> list[str]:
    """The first run sends; the second has nothing new (timed against the target)."""
    from aiosmtpd.controller import Controller

    sink = Sink()
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        settings = NotifySettings.from_config({"notify": {"channel": [
            {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": port, "from": "certfleet@example.com",
             "to": ["pki@example.com"]}]}})
        notifier = Notifier(reg, settings)
        tn1, r1 = timed(lambda: notifier.run_once(now + dt.timedelta(minutes=10)))
        tn2, r2 = timed(lambda: notifier.run_once(now + dt.timedelta(minutes=11)), profile == "notify", "notify")
    finally:
        ctl.stop()
    return [
        f"  notify run (first)     {tn1:8.1f} s   ({r1.notices} notices, {r1.digests} digests, {r1.sent} sent; "
        f"{sink.count} mails)",
        f"  notify run (idle)      {tn2:8.2f} s   ({r2.notices} notices, {r2.sent} sent) {mark(tn2, 'notify')}",
    ]


def cli_params(argv: list[str]) -> dict[str, str]:
    """The report parameters the CLI sends for ``certfleet <argv>``."""
    from collector.cli import main as admin_cli
    from collector.cli import reports as cli_reports
    return cli_reports.request_params(admin_cli.build_parser().parse_args(argv))


def _serve_reports(url: str, port: int, now_iso: str, ready: Any) -> None:
    """(In a separate process) the collector's ReportServicer on ``url``, on 127.0.0.1:``port``."""
    import asyncio

    import grpc

    from certfleet.v1 import report_pb2_grpc
    from collector.api.auth import AdminCaller
    from collector.api.reports import ReportServicer

    now = dt.datetime.fromisoformat(now_iso)

    class StandInAuth:      # the role check: one indexed admin-identity lookup in the collector
        async def admin(self, context: Any, permission: str) -> AdminCaller:
            return AdminCaller(name="bench", role="admin", serial="0")

    async def main() -> None:
        with Registry.open(url) as reg:
            server = grpc.aio.server()
            report_pb2_grpc.add_ReportServiceServicer_to_server(ReportServicer(reg, StandInAuth(), lambda: now),
                                                                server)  # type: ignore[arg-type]
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            ready.set()
            await server.wait_for_termination()

    asyncio.run(main())


class cli_expiring:  # noqa: N801 - used as a function
    """Runs ``certfleet report ...`` (the CLI's command function) against a ReportServicer process."""

    def __init__(self, url: str, now: dt.datetime) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.port = free_port()
        ready = ctx.Event()
        self.proc = ctx.Process(target=_serve_reports, args=(url, self.port, now.isoformat(), ready), daemon=True)
        self.proc.start()
        if not ready.wait(120):
            self.proc.kill()
            raise RuntimeError("the report server did not start")

    def __call__(self, argv: list[str], runs: int = 3) -> tuple[float, str]:
        import contextlib
        import statistics

        import grpc

        from collector.cli import main as admin_cli
        times, out = [], ""
        for k in range(runs + 1):
            ns = admin_cli.build_parser().parse_args(argv)
            buf = io.StringIO()
            with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=30)
                t = time.perf_counter()
                with contextlib.redirect_stdout(buf):
                    code = ns.func(channel, ns)
                el = time.perf_counter() - t
            assert code == 0, code
            if k:                                  # the first run warms up (imports, caches)
                times.append(el)
            out = buf.getvalue()
        return statistics.median(times), out

    def close(self) -> None:
        self.proc.kill()
        self.proc.join(10)


def pg_database() -> tuple[str, Callable[[], None]]:
    import sqlalchemy as sa

    name = "certfleet_govbench_" + uuid.uuid4().hex[:8]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--certs", type=int, default=100_000)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--profile", choices=("expiring", "policy", "notify"), default="")
    ap.add_argument("--only", default="expiring,policy,notify", help="what to measure (comma-separated)")
    args = ap.parse_args()
    only = frozenset(x.strip() for x in args.only.split(",") if x.strip())
    if not only or only - set(TARGETS):
        ap.error(f"--only: choose among {', '.join(TARGETS)}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    ders = certificates(args.certs)
    fps = [hashlib.sha256(d).hexdigest() for d in ders]
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            measure("SQLite", f"sqlite:///{tmp}/bench.db", ders, fps, args.agents, args.profile, only)
    if not args.no_pg:
        url, drop = pg_database()
        try:
            measure("PostgreSQL", url, ders, fps, args.agents, args.profile, only)
        finally:
            drop()


if __name__ == "__main__":
    main()
