"""What ``certfleet`` leaves a script when the collector fails half-way: a real gRPC server on
loopback (mutual TLS, the admin API's own stubs) that sends some pages of certificates and then is
stopped mid-stream, and the installed console script reading from it.

The promise: a machine format is complete or absent. Either valid JSON (CSV) on standard output
and exit 0, or nothing on standard output, the reason on standard error and a non-zero exit."""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys
import threading
import time
from concurrent import futures
from typing import Iterator

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector.config.client import write_client_config

UTC = dt.timezone.utc


def _pki(out: pathlib.Path) -> tuple[bytes, bytes, bytes]:
    """A CA, an admin identity (files as init-admin writes them) and a server certificate for
    ``localhost``; returns (ca pem, server cert pem, server key pem)."""
    now = dt.datetime.now(UTC)
    pem = serialization.Encoding.PEM

    def key_pem(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def cert(cn: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey, ca: bool,
             san: str = "") -> bytes:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return b.sign(signer, hashes.SHA256()).public_bytes(pem)

    ca_key, admin_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = cert("test CA", ca_key, ca_key, True)
    (out / "ca.pem").write_bytes(ca)
    (out / "admin.pem").write_bytes(cert("admin", admin_key, ca_key, False))
    (out / "admin.key").write_bytes(key_pem(admin_key))
    return ca, cert("localhost", server_key, ca_key, False, san="localhost"), key_pem(server_key)


def _page(start: int, n: int) -> admin_pb2.CertificatePage:
    page = admin_pb2.CertificatePage()
    for i in range(start, start + n):
        c = page.certificates.add(
            fingerprint_sha256=f"{i:064x}", subject=f"CN=host{i}.example.com", issuer="CN=test CA",
            serial=str(i), key_type="EC", key_curve="secp256r1", signature_algorithm="ecdsa-with-SHA256")
        c.not_before.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=UTC))
        c.not_after.FromDatetime(dt.datetime(2030, 1, 1, tzinfo=UTC))
        c.locations.add(agent_id="a1", hostname=f"host{i}", store_type="pem", path=f"/etc/ssl/h{i}.pem",
                        status="present")
    return page


class HeldUpAdmin(admin_pb2_grpc.AdminServiceServicer):
    """Sends ``pages`` pages of certificates, then is held up (as a collector waiting on a busy
    database) until the test stops the server; or, with ``pages`` None, answers completely."""

    def __init__(self, pages: int | None) -> None:
        self.pages = pages
        self.sent = threading.Event()       # the pages before the hold-up went out
        self.release = threading.Event()

    def ListCertificates(self, request, context) -> Iterator[admin_pb2.CertificatePage]:  # noqa: ANN001, N802
        for p in range(self.pages if self.pages is not None else 3):
            yield _page(p * 500, 500)
        if self.pages is None:
            return
        self.sent.set()
        self.release.wait(60)               # held up: the server is stopped under it


@pytest.fixture
def collector(tmp_path: pathlib.Path):  # noqa: ANN201
    """Start a fake admin API: ``collector(pages)`` -> (servicer, server, client config path)."""
    servers: list[grpc.Server] = []
    held: list[threading.Event] = []
    ca, server_cert, server_key = _pki(tmp_path)

    def start(pages: int | None) -> tuple[HeldUpAdmin, grpc.Server, pathlib.Path]:
        servicer = HeldUpAdmin(pages)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)
        creds = grpc.ssl_server_credentials([(server_key, server_cert)], root_certificates=ca,
                                            require_client_auth=True)
        port = server.add_secure_port("127.0.0.1:0", creds)
        server.start()
        servers.append(server)
        held.append(servicer.release)
        return servicer, server, write_client_config(tmp_path, f"127.0.0.1:{port}", server_name="localhost")

    yield start
    for ev in held:
        ev.set()
    for s in servers:
        s.stop(0)


def certfleet(config: pathlib.Path, *args: str) -> subprocess.Popen:
    exe = pathlib.Path(sys.executable).parent / "certfleet"
    return subprocess.Popen([str(exe), "--config", str(config), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin"})


def _stop_mid_stream(servicer: HeldUpAdmin, server: grpc.Server, proc: subprocess.Popen) -> tuple[str, str]:
    assert servicer.sent.wait(60), "the fake collector never sent its pages"
    time.sleep(1.0)                          # the CLI has read and written what it got
    server.stop(0).wait(30)                  # the collector goes away mid-stream
    out_err = proc.communicate(timeout=60)
    servicer.release.set()
    return out_err


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_collector_stopped_mid_stream_leaves_nothing_on_stdout(collector, fmt: str) -> None:
    servicer, server, config = collector(pages=2)
    proc = certfleet(config, "certs", "list", "--format", fmt)
    out, err = _stop_mid_stream(servicer, server, proc)
    assert proc.returncode == 1, (proc.returncode, err, out[:300], out[-300:])
    assert out == "", f"{len(out)} characters of a half {fmt} document on stdout"
    assert err.startswith("certfleet: ") and err.count("\n") == 1, err


def test_a_complete_answer_is_valid_json_and_csv(collector) -> None:
    _, _, config = collector(pages=None)
    proc = certfleet(config, "certs", "list", "--format", "json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    certs = json.loads(out)
    assert len(certs) == 1500 and certs[-1]["subject"] == "CN=host1499.example.com"
    proc = certfleet(config, "certs", "list", "--format", "csv")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(out.splitlines()) == 1 + 1500 and out.startswith("fingerprint_sha256,")


def test_the_table_still_shows_what_came_before_the_failure(collector) -> None:
    """Human output is not held back (it streams); the failure still ends it with a non-zero exit."""
    servicer, server, config = collector(pages=1)
    proc = certfleet(config, "certs", "list")
    out, err = _stop_mid_stream(servicer, server, proc)
    assert proc.returncode == 1 and err.startswith("certfleet: "), err


def test_json_lines_stream_and_mark_their_end(collector) -> None:
    """``--format jsonl`` is not held back (a long list streams in bounded memory); its last line
    is the summary. A stream cut half-way has no summary line and exits non-zero."""
    _, _, config = collector(pages=None)
    proc = certfleet(config, "certs", "list", "--format", "jsonl")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[-1] == {"summary": {"certificates": 1500, "complete": True}}
    assert len(lines) == 1501 and lines[0]["subject"] == "CN=host0.example.com"

    servicer, server, config = collector(pages=2)
    proc = certfleet(config, "certs", "list", "--format", "jsonl")
    out, err = _stop_mid_stream(servicer, server, proc)
    assert proc.returncode == 1 and err.startswith("certfleet: "), err
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines and all("summary" not in x for x in lines)      # what came, and no end mark
