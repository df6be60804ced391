"""How fast the registry stores a large inventory report.

    .venv/bin/python bench/bench_ingest.py [--count 20000] [--chunk 1000] [--pg-url URL] [--no-pg]

Prints, for SQLite (a temporary file) and PostgreSQL (a temporary schema):
the time to parse the certificates alone, to store a first full report of
``count`` distinct certificates at ``count`` locations (parse included), to
store the same full report again (nothing new to parse), to store it once more
with the issuing CA added (which links every stored certificate to it), and to
stream the whole certificate list; with rows per second. Certificate
generation is not timed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import ipaddress
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from collector.domain.certinfo import parse_certificate  # noqa: E402
from collector.registry import Registry  # noqa: E402
from collector.registry.types import CertFilter, HostFacts, LocationIn, ReportHeaderIn  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)


def make_certificates(n: int) -> tuple[bytes, list[bytes]]:
    """An issuing CA and ``n`` distinct server certificates it issued (one shared leaf key)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench Corp"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Bench Issuing CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    ski = x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key())
    ders = []
    for i in range(n):
        cn = f"host{i:05d}.bench.example.com"
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1 + i % 397))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(cn), x509.DNSName(f"alt{i}.bench.example.com"),
                x509.IPAddress(ipaddress.ip_address(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}")),
            ]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(aki, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        ders.append(cert.public_bytes(Encoding.DER))
    return ca.public_bytes(Encoding.DER), ders


def locations(ders: list[bytes]) -> list[LocationIn]:
    return [
        LocationIn(
            store_type="pem", path=f"/etc/ssl/certs/site{i:05d}.pem", alias="", chain_index=0, der=d,
            fingerprint=hashlib.sha256(d).hexdigest(), has_private_key=True, key_encrypted=False,
            key_match="matches", entry_type="certificate", file_owner="root", file_group="ssl-cert",
            file_mode=0o640, file_mtime=NOW - dt.timedelta(hours=1), labels={"service": "nginx"},
        )
        for i, d in enumerate(ders)
    ]


def store(reg: Registry, agent_id: str, locs: list[LocationIn], report_id: str, seq: int, chunk: int,
          now: dt.datetime) -> tuple[float, object]:
    hdr = ReportHeaderIn(report_id=report_id, full=True, sequence=seq, base_sequence=0,
                         host=HostFacts(hostname="bench.example.com", os="linux"))
    t = time.perf_counter()
    txn = reg.begin_report(agent_id, hdr, now)
    for i in range(0, len(locs), chunk):
        txn.add_upserts(locs[i:i + chunk])
    result = txn.finish()
    return time.perf_counter() - t, result


def run(label: str, url: str, locs: list[LocationIn], ca_loc: LocationIn, chunk: int) -> None:
    with Registry.open(url) as reg:
        reg.create_token("0" * 64, NOW + dt.timedelta(hours=1), "bench", NOW)
        reg.enroll_agent("0" * 64, "bench-agent", HostFacts(hostname="bench.example.com"), "1",
                         NOW + dt.timedelta(days=30), NOW)
        n = len(locs)
        t1, r1 = store(reg, "bench-agent", locs, "first", 1, chunk, NOW)
        t2, r2 = store(reg, "bench-agent", locs, "second", 2, chunk, NOW + dt.timedelta(minutes=5))
        # a third report that also brings the issuing CA: links every stored leaf to it
        t3, r3 = store(reg, "bench-agent", locs + [ca_loc], "third", 3, chunk, NOW + dt.timedelta(minutes=10))
        t = time.perf_counter()
        listed = sum(1 for _ in reg.list_certificates(CertFilter()))
        t4 = time.perf_counter() - t
        print(f"{label}:")
        print(f"  first full report   {t1:6.2f} s  {n / t1:8.0f} locations/s  "
              f"(new certs {r1.certificates_new}, upserted {r1.locations_upserted})")  # type: ignore[attr-defined]
        print(f"  same report again   {t2:6.2f} s  {n / t2:8.0f} locations/s  "
              f"(new certs {r2.certificates_new}, removed {r2.locations_removed})")  # type: ignore[attr-defined]
        print(f"  again + issuer CA   {t3:6.2f} s  {n / t3:8.0f} locations/s  "
              f"(new certs {r3.certificates_new}; links {n} existing certificates to it)")  # type: ignore[attr-defined]
        print(f"  list certificates   {t4:6.2f} s  {listed / t4:8.0f} certificates/s  ({listed} streamed)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--pg-url", default=os.environ.get("CERTFLEET_TEST_PG_URL",
                                                        "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()

    t = time.perf_counter()
    ca_der, ders = make_certificates(args.count)
    print(f"generated {len(ders)} certificates in {time.perf_counter() - t:.1f} s (not counted)")
    t = time.perf_counter()
    for d in ders:
        parse_certificate(d)
    tp = time.perf_counter() - t
    print(f"parse only: {tp:.2f} s  {len(ders) / tp:.0f} certificates/s")
    locs = locations(ders)
    ca_loc = locations([ca_der])[0]
    ca_loc = LocationIn(**{**{f: getattr(ca_loc, f) for f in ca_loc.__slots__}, "path": "/etc/ssl/ca.pem"})

    with tempfile.TemporaryDirectory() as tmp:
        run(f"SQLite ({args.count} certificates, chunks of {args.chunk})", f"sqlite:///{tmp}/bench.db",
            locs, ca_loc, args.chunk)

    if args.no_pg:
        return
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(args.pg_url)
        admin = psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                                dbname=u.database, autocommit=True, connect_timeout=5)
    except Exception as e:  # noqa: BLE001
        print(f"PostgreSQL: skipped ({type(e).__name__}: {e})")
        return
    schema = f"certfleet_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(args.pg_url).set(drivername="postgresql+psycopg").update_query_dict(
            {"options": f"-csearch_path={schema}"})
        run(f"PostgreSQL ({args.count} certificates, chunks of {args.chunk})",
            url.render_as_string(hide_password=False), locs, ca_loc, args.chunk)
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


if __name__ == "__main__":
    main()
