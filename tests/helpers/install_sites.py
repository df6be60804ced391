"""Helpers for the install tests: a small test CA, real nginx on loopback, PEM sites made with openssl."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def nginx_binary() -> str | None:
    """Debian's nginx (often outside a non-root PATH), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fp(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def run(*args: str, input: bytes | None = None) -> str:
    """Run a real tool with an argument list; fail the test with its output."""
    p = subprocess.run(list(args), capture_output=True, input=input, timeout=60)
    assert p.returncode == 0, f"{args[0]} failed ({p.returncode}): {p.stdout.decode()} {p.stderr.decode()}"
    return p.stdout.decode("utf-8", "replace")


@dataclass
class Issued:
    cert_der: bytes
    chain_ders: tuple[bytes, ...]          # issuer first, root last
    serial: int

    @property
    def fingerprint(self) -> str:
        return fp(self.cert_der)

    @property
    def cert_pem(self) -> bytes:
        return x509.load_der_x509_certificate(self.cert_der).public_bytes(PEM)

    def chain_pem(self, with_root: bool = False) -> bytes:
        ders = self.chain_ders if with_root else self.chain_ders[:-1]
        return b"".join(x509.load_der_x509_certificate(d).public_bytes(PEM) for d in ders)


class TestCA:
    """A root and an intermediate (EC P-256), issuing server certificates that pass RFC 5280 validation."""

    __test__ = False   # not a test class

    def __init__(self, name: str = "Certfleet Install Test") -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._ca(f"{name} Root", self.root_key, None, None)
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        self.inter = self._ca(f"{name} Intermediate", self.inter_key, self.root, self.root_key, path_length=0)

    @staticmethod
    def _now() -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)

    def _ca(self, cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
            issuer_key: ec.EllipticCurvePrivateKey | None, path_length: int | None = None) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Certfleet Tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = self._now()
        b = (x509.CertificateBuilder().subject_name(name)
             .issuer_name(issuer.subject if issuer else name).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now)
             .not_valid_after(now + dt.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if issuer is not None:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
                                critical=False)
        return b.sign(issuer_key or key, hashes.SHA256())

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(PEM)

    def issue(self, public_key: object, names: tuple[str, ...] = ("www.example.test",), *,
              via_intermediate: bool = True, days: int = 30) -> Issued:
        pub = public_key.public_key() if hasattr(public_key, "public_key") else public_key
        issuer, issuer_key = (self.inter, self.inter_key) if via_intermediate else (self.root, self.root_key)
        now = self._now()
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(issuer.subject).public_key(pub).serial_number(serial)  # type: ignore[arg-type]
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, isinstance(pub, rsa.RSAPublicKey), False, False, False, False,
                                             False, False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)  # type: ignore[arg-type]
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
                               critical=False)
                .sign(issuer_key, hashes.SHA256()))
        chain = (self.inter, self.root) if via_intermediate else (self.root,)
        return Issued(cert.public_bytes(DER), tuple(c.public_bytes(DER) for c in chain), serial)


def openssl_key(path: Path, kind: str = "ec", traditional: bool = False, mode: int = 0o600) -> Path:
    """A private key made by openssl: PKCS#8 PEM, or the traditional form."""
    if kind == "ec":
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    else:
        run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    if traditional:
        tmp = path.with_name(path.name + ".pkcs8")
        path.rename(tmp)
        run("openssl", "pkey", "-in", str(tmp), "-traditional", "-out", str(path))
        tmp.unlink()
    os.chmod(path, mode)
    return path


def public_key_of(key_path: Path) -> object:
    return serialization.load_pem_private_key(key_path.read_bytes(), None).public_key()


@dataclass
class PemSite:
    """Files of one PEM layout, the certificate they hold, and what nginx should point at."""

    directory: Path
    cert_path: Path                 # the location (certificate file)
    key_path: Path                  # where the key is (== cert_path for a combined file)
    issued: Issued
    nginx_cert: Path
    nginx_key: Path
    chain_path: Path | None = None
    extra: dict[str, Path] = field(default_factory=dict)


def make_pem_site(directory: Path, ca: TestCA, layout: str, *, kind: str = "ec", traditional: bool = False,
                  names: tuple[str, ...] = ("www.example.test",)) -> PemSite:
    """``layout``: "separate" (cert.pem, key.pem, chain.pem; leaf from the root so the leaf alone validates),
    "fullchain" (fullchain.pem + key.pem, chain.pem) or "combined" (site.pem: key, leaf, chain)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = openssl_key(directory / ("site.key.tmp" if layout == "combined" else "key.pem"), kind, traditional)
    issued = ca.issue(public_key_of(key), names, via_intermediate=layout != "separate")
    if layout == "separate":
        cert = directory / "cert.pem"
        cert.write_bytes(issued.cert_pem)
        chain = directory / "chain.pem"
        chain.write_bytes(issued.chain_pem(with_root=True))
        return PemSite(directory, cert, key, issued, cert, key, chain)
    if layout == "fullchain":
        full = directory / "fullchain.pem"
        full.write_bytes(issued.cert_pem + issued.chain_pem())
        chain = directory / "chain.pem"
        chain.write_bytes(issued.chain_pem())
        return PemSite(directory, full, key, issued, full, key, chain)
    if layout == "combined":
        combined = directory / "site.pem"
        combined.write_bytes(key.read_bytes() + issued.cert_pem + issued.chain_pem())
        key.unlink()
        os.chmod(combined, 0o600)
        return PemSite(directory, combined, combined, issued, combined, combined)
    raise ValueError(layout)


_NGINX_CONF = """\
{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {server_name};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        return 200 "ok\\n";
    }}
}}
"""


class Nginx:
    """A real nginx master on 127.0.0.1 with its own config and prefix; stopped by :meth:`stop`."""

    def __init__(self, binary: str, prefix: Path, cert: Path, key: Path, server_name: str = "www.example.test") -> None:
        self.binary = binary
        self.prefix = prefix
        self.port = free_port()
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(_NGINX_CONF.format(user=user, prefix=prefix, port=self.port, server_name=server_name,
                                                cert=cert, key=key))
        self.log = open(prefix / "stderr.log", "wb")
        self.proc = subprocess.Popen(self.base_command(), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self._wait_ready()

    def base_command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf), "-p", f"{self.prefix}/", "-e", f"{self.prefix}/error.log"]

    @property
    def reload_command(self) -> list[str]:
        """The reload as an argument list (what a [reload.nginx] action holds)."""
        return [*self.base_command(), "-s", "reload"]

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.prefix / 'error.log').read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("nginx did not start listening")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()           # SIGTERM: fast shutdown of the master and its workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def served_fingerprint(port: int, sni: str = "www.example.test") -> str:
    """What 127.0.0.1:port serves now (one handshake, nothing trusted)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der
    return fp(der)


def keytool_list(path: Path, password_file: Path, storetype: str | None = None) -> str:
    args = ["keytool", "-list", "-v", "-keystore", str(path), "-storepass:file", str(password_file)]
    if storetype:
        args += ["-storetype", storetype]
    return run(*args)
