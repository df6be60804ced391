"""Helpers for the issuer tests (tests/issuers, tests/e2e): CSRs as an agent makes them, chain checks, and a real
pebble ACME server (with pebble-challtestsrv as its DNS) on loopback."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from collector.issuers.base import Issued, Issuer
from collector.domain.templates import SubjectNames, Template

PEBBLE = "pebble"
CHALLTESTSRV = "pebble-challtestsrv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (a DNS server binds both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


# -- keys and CSRs -------------------------------------------------------------


def new_key(kind: str = "ec", size_or_curve: int | str = "P-256"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(size_or_curve))
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[str(size_or_curve)]
    return ec.generate_private_key(curve)


def make_csr(key, dns: list[str] = (), ips: list[str] = (), cn: str | None = None) -> bytes:
    """A DER CSR carrying the names as SANs (as the agent makes it)."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def tamper_signature(csr_der: bytes) -> bytes:
    """The same CSR with one bit of its signature flipped."""
    data = bytearray(csr_der)
    data[-3] ^= 0x01
    return bytes(data)


def spki(obj) -> bytes:
    return obj.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- chain checks -------------------------------------------------------------------


def verify_chain(issued: Issued, root_der: bytes, dns_name: str, now: dt.datetime) -> None:
    """Signatures leaf -> intermediates -> root, a WebPKI-style path validation with
    cryptography, and ``openssl verify`` when openssl is installed."""
    leaf = x509.load_der_x509_certificate(issued.certificate_der)
    chain = [x509.load_der_x509_certificate(d) for d in issued.chain_ders]
    root = x509.load_der_x509_certificate(root_der)
    assert chain, "the chain must hold the intermediate"
    for child, parent in zip([leaf, *chain], [*chain, root]):
        child.verify_directly_issued_by(parent)
    root.verify_directly_issued_by(root)

    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([root]))
        .time(now)
        .build_server_verifier(verification.DNSName(dns_name))
    )
    path = verifier.verify(leaf, chain)
    assert path[-1] == root

    openssl = shutil.which("openssl")
    if openssl:
        with tempfile.TemporaryDirectory() as d:
            pem = serialization.Encoding.PEM
            (Path(d) / "root.pem").write_bytes(root.public_bytes(pem))
            (Path(d) / "chain.pem").write_bytes(b"".join(c.public_bytes(pem) for c in chain))
            (Path(d) / "leaf.pem").write_bytes(leaf.public_bytes(pem))
            out = subprocess.run(
                [openssl, "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
                cwd=d, capture_output=True, text=True, timeout=30,
            )
            assert out.returncode == 0, out.stdout + out.stderr


# -- openssl-made CA files (the "imported" internal CA) -------------------------------


def openssl_ca(directory: Path, intermediate_days: int = 400) -> dict[str, Path]:
    """A root and an intermediate made with the openssl CLI, as an admin would."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ext = d / "ext.cnf"
    ext.write_text(
        "[v3_int]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n"
    )

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key")
    run("req", "-x509", "-new", "-key", "root.key", "-sha256", "-days", "3650", "-subj", "/O=Example/CN=Example Root",
        "-config", "/dev/null", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash", "-out", "root.pem")
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "int.key.sec1")
    run("pkcs8", "-topk8", "-nocrypt", "-in", "int.key.sec1", "-out", "intermediate.key")
    run("req", "-new", "-key", "intermediate.key", "-subj", "/O=Example/CN=Example Intermediate",
        "-config", "/dev/null", "-out", "int.csr")
    run("x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial",
        "-days", str(intermediate_days), "-sha256", "-extfile", "ext.cnf", "-extensions", "v3_int",
        "-out", "intermediate.pem")
    os.chmod(d / "intermediate.key", 0o600)
    os.chmod(d / "root.key", 0o600)
    return {"root_cert": d / "root.pem", "intermediate_cert": d / "intermediate.pem",
            "intermediate_key": d / "intermediate.key", "root_key": d / "root.key"}


# -- pebble -------------------------------------------------------------------------


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: pebble's own TLS."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test TLS CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = directory / "tls-ca.pem", directory / "tls-cert.pem", directory / "tls-key.pem"
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(cert.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return ca_path, cert_path, key_path


@dataclass
class Pebble:
    """A running pebble and pebble-challtestsrv (its DNS server: every A query -> 127.0.0.1)."""

    directory: Path
    port: int
    mgmt_port: int
    http01_port: int
    dns_port: int
    dns_mgmt_port: int
    ca_bundle: Path
    procs: list[subprocess.Popen]

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _mgmt(self, path: str) -> requests.Response:
        return requests.get(f"https://127.0.0.1:{self.mgmt_port}{path}", verify=str(self.ca_bundle), timeout=10)

    def root_der(self) -> bytes:
        r = self._mgmt("/roots/0")
        r.raise_for_status()
        return x509.load_pem_x509_certificate(r.content).public_bytes(serialization.Encoding.DER)

    def cert_status(self, serial_hex: str) -> dict:
        r = self._mgmt(f"/cert-status-by-serial/{serial_hex}")
        r.raise_for_status()
        return r.json()

    @property
    def dns_mgmt_url(self) -> str:
        return f"http://127.0.0.1:{self.dns_mgmt_port}"

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}" for f in sorted(self.directory.glob("*.log"))
        )


def start_pebble(directory: Path, nonce_reject_percent: int = 0) -> Pebble:
    """Start pebble-challtestsrv (DNS only) and pebble on free loopback ports; wait until ready.
    ``nonce_reject_percent``: the share of good nonces pebble rejects as ``badNonce``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_bundle, cert, key = tls_files(directory)
    port, mgmt, http01, dns_mgmt = free_port(), free_port(), free_port(), free_port()
    dns = free_udp_tcp_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{mgmt}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http01,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (directory / "pebble-config.json").write_text(json.dumps(config, indent=2))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT=str(nonce_reject_percent), PEBBLE_AUTHZREUSE="0")
    procs: list[subprocess.Popen] = []
    pb = Pebble(directory, port, mgmt, http01, dns, dns_mgmt, ca_bundle, procs)
    try:
        with open(directory / "challtestsrv.log", "wb") as out:
            procs.append(subprocess.Popen(
                [CHALLTESTSRV, "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", f"127.0.0.1:{dns_mgmt}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            ))
        with open(directory / "pebble.log", "wb") as out:
            procs.append(subprocess.Popen(
                [PEBBLE, "-config", str(directory / "pebble-config.json"), "-dnsserver", f"127.0.0.1:{dns}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=directory,
            ))
        deadline = time.monotonic() + 20
        while True:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"pebble exited at start:\n{pb.logs()}")
            try:
                ok = requests.get(pb.directory_url, verify=str(ca_bundle), timeout=2).status_code == 200
                ok = ok and requests.get(pb.dns_mgmt_url + "/", timeout=2) is not None
            except requests.RequestException:
                ok = False
            if ok:
                return pb
            if time.monotonic() > deadline:
                raise RuntimeError(f"pebble did not become ready within 20 s:\n{pb.logs()}")
            time.sleep(0.1)
    except BaseException:
        pb.stop()
        raise


# -- the contract's cases ------------------------------------------------------------


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def make_template(issuer: str = "internal", **over: Any) -> Template:
    values: dict[str, Any] = dict(
        name="web", issuer=issuer, key_type="ec", key_size=None, curve="P-256",
        validity=dt.timedelta(days=30), key_usage=("digital_signature",),
        extended_key_usage=("serverAuth", "clientAuth"),
        allowed_san_patterns=("*.example.test", "example.test", "127.0.0.0/8"), allow_wildcards=False,
    )
    values.update(over)
    return Template(**values)


@dataclass
class IssuerCase:
    """One issuer under the contract, with what the tests need to judge its output."""

    id: str
    issuer: Issuer
    names: SubjectNames
    trust_root: Callable[[Issued], bytes]        # the root the chain must validate to
    is_revoked: Callable[[Issued], bool]
    issuing_not_after: Callable[[Issued], dt.datetime] = field(
        default=lambda i: min(x509.load_der_x509_certificate(d).not_valid_after_utc for d in i.chain_ders)
    )

    def template(self, **over: Any) -> Template:
        return make_template(**{"issuer": self.issuer.name, **over})

    def issue(self, template: Template | None = None, key=None, names: SubjectNames | None = None) -> tuple[Issued, Any]:
        """Issue for a fresh key whose CSR carries the names (as the agent makes it)."""
        template = template or self.template()
        names = names or self.names
        if key is None:
            key = new_key(template.key_type, template.key_size or template.curve)
        csr = make_csr(key, list(names.dns), list(names.ips), names.common_name or None)
        return self.issuer.issue(csr, template, names, utcnow()), key


# Every issuer gets the same request: two DNS names and an IP address (pebble validates
# the IP identifier by http-01 to 127.0.0.1 too).
NAMES = SubjectNames("www.example.test", ("www.example.test", "api.example.test"), ("127.0.0.1",))


