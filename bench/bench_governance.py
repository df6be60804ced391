"""How fast the governance features answer on a large registry (a benchmark, not a test).

    .venv/bin/python bench/bench_governance.py [--certs 100000] [--agents 100] [--no-pg] [--no-sqlite]
                                               [--profile expiring|policy|notify]

Fills a registry (a temporary SQLite file, and a fresh PostgreSQL database that is
dropped afterwards) with ``certs`` distinct certificates (small EC leaves signed by one
CA key, expiries spread over -30..+400 days; the DERs are cached in
$TMPDIR/certfleet-govbench-N.der and reused) at 3 locations each on 3 different agents
(``agents`` agents, each storing its share through one full report: begin_report,
add_upserts, finish), a few owners and assignment rules (host globs, a label rule and
some explicit assignments) so ownership resolves, and a policy document. Then measures:

- ``report expiring`` (collector.reports.build, as ReportService does) and rendering it to a table;
- a full policy evaluation (Registry.policies.evaluate_all): the first (stores every
  violation) and a second one (nothing new);
- a notification run that has nothing new to send (Notifier.run_once twice with one SMTP
  channel on a local aiosmtpd; the second is timed).

Targets (issue 4): expiring < 0.5 s, policy evaluation < 60 s, idle notification run < 5 s.
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
from collector.notify.notifier import Notifier  # noqa: E402
from collector.notify.settings import NotifySettings  # noqa: E402
from collector.registry import Registry  # noqa: E402
from collector.registry.types import HostFacts, LocationIn, LocationSelector, ReportHeaderIn  # noqa: E402
from collector.reports.render import render  # noqa: E402

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


def measure(label: str, url: str, ders: list[bytes], fps: list[str], agents: int, profile: str) -> None:
    from aiosmtpd.controller import Controller

    print(f"{label}: filling {len(ders)} certificates x 3 locations on {agents} agents", flush=True)
    with Registry.open(url) as reg:
        fill(reg, ders, fps, agents)
        now = NOW + dt.timedelta(hours=1)
        # (a) expiring report: build (as ReportService does) then render as a table
        reports.build(reg, "expiring", {}, now)          # warm-up (imports, caches)
        tb, rep = timed(lambda: reports.build(reg, "expiring", {}, now), profile == "expiring", "expiring")
        tr, text = timed(lambda: render(rep, "table"))
        rows = sum(len(s.rows) for s in rep.sections)
        # (b) policy evaluation
        tp1, s1 = timed(lambda: reg.policies.evaluate_all(now), profile == "policy", "policy (first)")
        tp2, s2 = timed(lambda: reg.policies.evaluate_all(now + dt.timedelta(minutes=5)))
        # (c) notifications: first run sends, the second has nothing new
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
    print(f"{label}:")
    print(f"  expiring report build  {tb * 1000:8.0f} ms  ({rows} rows, {len(text)} chars) {mark(tb, 'expiring')}")
    print(f"  ... + render table     {(tb + tr) * 1000:8.0f} ms  (render alone {tr * 1000:.0f} ms) "
          f"{mark(tb + tr, 'expiring')}")
    print(f"  policy eval (first)    {tp1:8.1f} s   ({s1.certificates} certs, {s1.locations} locations, "
          f"{s1.new} new violations) {mark(tp1, 'policy')}")
    print(f"  policy eval (again)    {tp2:8.1f} s   ({s2.still} still, {s2.new} new, {s2.cleared} cleared) "
          f"{mark(tp2, 'policy')}")
    print(f"  notify run (first)     {tn1:8.1f} s   ({r1.notices} notices, {r1.digests} digests, {r1.sent} sent; "
          f"{sink.count} mails)")
    print(f"  notify run (idle)      {tn2:8.2f} s   ({r2.notices} notices, {r2.sent} sent) {mark(tn2, 'notify')}",
          flush=True)


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
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    ders = certificates(args.certs)
    fps = [hashlib.sha256(d).hexdigest() for d in ders]
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            measure("SQLite", f"sqlite:///{tmp}/bench.db", ders, fps, args.agents, args.profile)
    if not args.no_pg:
        url, drop = pg_database()
        try:
            measure("PostgreSQL", url, ders, fps, args.agents, args.profile)
        finally:
            drop()


if __name__ == "__main__":
    main()
