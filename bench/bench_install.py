#!/usr/bin/env python3
"""Benchmark one install on a real nginx: check, backup, write, reload, verify (a benchmark, not a test).

    .venv/bin/python bench/bench_install.py [--rounds 10] [--key ec-p256] [--layout fullchain]

Starts Debian's nginx on 127.0.0.1 (its own config and prefix in a temporary
directory, stopped at the end) serving a PEM site made with openssl, then
renews it ``--rounds`` times: a new key on the host, a certificate from a test
CA (made with cryptography, standing in for the collector's issuer), and
agent.install.install() with the reload action ``nginx -s reload`` and one
verify endpoint. Prints per round and as medians: the whole install, the
reload command's own time (reported separately, as the issue asks), the
verification (handshakes until the new certificate is served steadily:
three in a row over at least 0.3 s, because nginx keeps its old workers
answering for about 0.1 s after a reload) and
the install without the reload. Key generation and issuance are reported
apart from the install.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.config import ReloadAction, StoreConfig, VerifyEndpoint  # noqa: E402
from agent.install import VERIFIED, InstallRequest, install  # noqa: E402
from agent.inventory import LocationKey  # noqa: E402
from agent.keys import new_key  # noqa: E402
from tests.helpers.install_sites import Nginx, TestCA, make_pem_site, nginx_binary, served_fingerprint  # noqa: E402

SNI = "www.example.test"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--key", default="ec-p256", help="key spec of the renewed certificates (default ec-p256)")
    ap.add_argument("--layout", default="fullchain", choices=["separate", "fullchain", "combined"])
    args = ap.parse_args(argv)
    binary = nginx_binary()
    if binary is None:
        print("nginx is not installed (apt-get install nginx)", file=sys.stderr)
        return 1
    ca = TestCA("certfleet bench")
    with tempfile.TemporaryDirectory(prefix="certfleet-bench-install-") as tmp:
        base = Path(tmp)
        site = make_pem_site(base / "site", ca, args.layout)
        prefix = base / "nginx"
        prefix.mkdir()
        server = Nginx(binary, prefix, site.nginx_cert, site.nginx_key)
        try:
            rows = run_rounds(args, ca, site, server, base / "data")
        finally:
            server.stop()
    print_summary(rows, args)
    return 0 if all(r["state"] == VERIFIED for r in rows) else 1


def run_rounds(args: argparse.Namespace, ca: TestCA, site, server: Nginx, data_dir: Path) -> list[dict]:
    old_fp = site.issued.fingerprint
    rows = []
    store = StoreConfig("web", "pem", (str(site.directory / "*.pem"),))
    action = ReloadAction("nginx", tuple(server.reload_command), 30.0)
    key_file = str(site.key_path) if site.key_path != site.cert_path else None
    print(f"nginx on 127.0.0.1:{server.port}, layout {args.layout}, key {args.key}, {args.rounds} rounds")
    print(f"{'round':>5} {'keygen':>8} {'issue':>8} {'install':>8} {'reload':>8} {'verify':>8} "
          f"{'no-reload':>9}  state")
    for i in range(args.rounds):
        t0 = time.perf_counter()
        key = new_key(args.key)
        t1 = time.perf_counter()
        issued = ca.issue(key, (SNI,), via_intermediate=args.layout != "separate")
        t2 = time.perf_counter()
        req = InstallRequest(
            job_id=f"bench-{i}", location=LocationKey("pem", str(site.cert_path), "", 0), store=store, key=key,
            cert_der=issued.cert_der, chain_ders=issued.chain_ders, expected_old_fingerprint=old_fp,
            key_file=key_file, reload=action, verify=(VerifyEndpoint("127.0.0.1", server.port, SNI),),
            verify_timeout=10.0,
        )
        res = install(req, data_dir)
        total = res.seconds
        reload_s = res.reload_seconds or 0.0
        row = {"keygen": t1 - t0, "issue": t2 - t1, "install": total, "reload": reload_s,
               "verify": res.verify_seconds or 0.0, "no_reload": total - reload_s, "state": res.state}
        rows.append(row)
        print(f"{i + 1:>5} {row['keygen']*1000:>6.1f}ms {row['issue']*1000:>6.1f}ms {total*1000:>6.1f}ms "
              f"{reload_s*1000:>6.1f}ms {row['verify']*1000:>6.1f}ms {row['no_reload']*1000:>7.1f}ms  "
              f"{res.state}{'' if res.ok else ': ' + res.reason}")
        if res.ok:
            old_fp = issued.fingerprint
            assert served_fingerprint(server.port) == old_fp
    return rows


def print_summary(rows: list[dict], args: argparse.Namespace) -> None:
    def med(k: str) -> float:
        return statistics.median(r[k] for r in rows) * 1000

    def worst(k: str) -> float:
        return max(r[k] for r in rows) * 1000

    ok = sum(r["state"] == VERIFIED for r in rows)
    print()
    print(f"verified {ok}/{len(rows)}")
    print(f"install (check+backup+write+reload+verify): median {med('install'):.1f} ms, max {worst('install'):.1f} ms")
    print(f"  nginx -s reload (reported separately):    median {med('reload'):.1f} ms, max {worst('reload'):.1f} ms")
    print(f"  verify (steady for >= 0.3 s):             median {med('verify'):.1f} ms, max {worst('verify'):.1f} ms")
    print(f"  install without the reload:               median {med('no_reload'):.1f} ms, "
          f"max {worst('no_reload'):.1f} ms")
    print(f"key generation ({args.key}) median {med('keygen'):.1f} ms; test-CA issuance median {med('issue'):.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
