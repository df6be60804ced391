"""Test doubles at the Windows boundary only, and a real TLS server that serves what the fake http.sys table says.

:class:`FakeWindowsApi` implements :class:`agent.windows.api.WindowsApi`: it
keeps store records, an http.sys binding table, and the IIS sites XML; it
records every call (never the PFX password). It really opens each imported
PFX with the password it was given, so a wrong PFX or password fails as it
would on Windows, and the key inside is the key the TLS server then uses.

:class:`FakeHttpSys` listens on loopback addresses and picks the certificate
of each handshake the way http.sys does (an SNI ``Hostname:port`` entry for the
name sent, else the ``IP:port`` entry of the address connected to, else
``0.0.0.0:port``), from the fake's table at the moment of the handshake: a
rebinding through the fake changes what the next handshake gets.
"""
from __future__ import annotations

import datetime as dt
import os
import selectors
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12
from cryptography.x509.oid import NameOID

from agent.windows.errors import StoreNotFound, WindowsApiError
from agent.windows.records import KeyFacts, KeyProvInfo, StoreRecord, public_blob_of, thumbprint_of
from agent.windows.sslcert import CCS, IPPORT, SslBinding

IIS_APPID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
KSP = "Microsoft Software Key Storage Provider"


# --------------------------------------------------------------------------- a small PKI

@dataclass
class Pki:
    root_key: Any
    root: x509.Certificate
    ica_key: Any
    ica: x509.Certificate

    @classmethod
    def make(cls) -> "Pki":
        now = dt.datetime.now(dt.timezone.utc)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certfleet test root")])
        root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
                .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
                .sign(root_key, hashes.SHA256()))
        ica_key = ec.generate_private_key(ec.SECP256R1())
        ica_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certfleet test issuing CA")])
        ica = (x509.CertificateBuilder().subject_name(ica_name).issuer_name(root_name)
               .public_key(ica_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1825))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ica_key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                              critical=False)
               .sign(root_key, hashes.SHA256()))
        return cls(root_key, root, ica_key, ica)

    def leaf(self, names: list[str], key: Any = None) -> tuple[Any, bytes]:
        now = dt.datetime.now(dt.timezone.utc)
        key = key or ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.ica.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ica_key.public_key()),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.ica_key, hashes.SHA256()))
        return key, cert.public_bytes(Encoding.DER)

    @property
    def chain_ders(self) -> tuple[bytes, bytes]:
        return self.ica.public_bytes(Encoding.DER), self.root.public_bytes(Encoding.DER)

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(Encoding.PEM)


# --------------------------------------------------------------------------- netsh output, as Windows Server 2022 prints it

def render_sslcert(bindings: list[SslBinding]) -> str:
    lines = ["", "SSL Certificate bindings:", "-------------------------", ""]
    for b in bindings:
        label = {IPPORT: "IP:port", CCS: "Central Certificate Store"}.get(b.kind, "Hostname:port")
        lines.append(f"    {label:<29}: {b.endpoint}")
        lines.append(f"    {'Certificate Hash':<29}: {b.certificate_hash.lower() or '(null)'}")
        lines.append(f"    {'Application ID':<29}: {b.app_id or '(null)'}")
        lines.append(f"    {'Certificate Store Name':<29}: {b.store_name or '(null)'}")
        for k, v in b.settings:
            lines.append(f"    {k:<29}: {v}")
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


DEFAULT_SETTINGS = (
    ("Verify Client Certificate Revocation", "Enabled"),
    ("Verify Revocation Using Cached Client Certificate Only", "Disabled"),
    ("Usage Check", "Enabled"), ("Revocation Freshness Time", "0"), ("URL Retrieval Timeout", "0"),
    ("Ctl Identifier", "(null)"), ("Ctl Store Name", "(null)"), ("DS Mapper Usage", "Disabled"),
    ("Negotiate Client Certificate", "Disabled"), ("Reject Connections", "Disabled"),
    ("Disable HTTP2", "Not Set"), ("Disable Legacy TLS Versions", "Set"),
)


# --------------------------------------------------------------------------- the fake boundary

@dataclass
class _Material:
    der: bytes
    key: Any
    chain: tuple[bytes, ...] = ()


@dataclass
class FakeWindowsApi:
    stores: dict[tuple[str, str], list[StoreRecord]] = field(default_factory=dict)
    sslcerts: list[SslBinding] = field(default_factory=list)
    sites_xml: str | None = None
    raw_sslcert: str | None = None           # recorded netsh output to return verbatim (instead of the table)
    fail_sslcert: bool = False
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    material: dict[str, _Material] = field(default_factory=dict)
    stuck: bool = False                      # rebinding "succeeds" but http.sys keeps the old certificate
    fail_update: set[str] = field(default_factory=set)   # endpoints whose rebinding fails
    fail_import: bool = False
    passwords: list[str] = field(default_factory=list)   # what import_pfx was given (for the no-leak checks)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # test set-up
    def add_cert(self, store: str, der: bytes, key: Any | None, chain: tuple[bytes, ...] = (),
                 exportable: bool = False, friendly_name: str = "") -> str:
        thumb = thumbprint_of(der)
        prov = KeyProvInfo(f"te-{thumb[:8].lower()}", KSP, 0, 0x20, 0) if key is not None else None
        facts = KeyFacts(True, KSP, 0x3 if exportable else 0, public_blob_of(key.public_key())) if key else None
        self.stores.setdefault(("LocalMachine", store), []).append(
            StoreRecord("LocalMachine", store, der, thumb, friendly_name, prov, facts))
        self.material[thumb] = _Material(der, key, chain)
        return thumb

    def bind(self, kind: str, address: str, port: int, thumb: str, store: str = "MY") -> SslBinding:
        b = SslBinding(kind, address, port, thumb, IIS_APPID, store, DEFAULT_SETTINGS)
        self.sslcerts.append(b)
        return b

    def thumbs(self, store: str = "My") -> list[str]:
        return [r.thumbprint for r in self.stores.get(("LocalMachine", store), [])]

    def record(self, thumb: str, store: str = "My") -> StoreRecord:
        return next(r for r in self.stores[("LocalMachine", store)] if r.thumbprint == thumb)

    # the WindowsApi protocol
    def list_store(self, location: str, name: str) -> list[StoreRecord]:
        self.calls.append(("list_store", location, name))
        if (location, name) not in self.stores:
            raise StoreNotFound("CertOpenStore", 2, f"the store {location}\\{name} does not exist")
        return list(self.stores[(location, name)])

    def list_iis_sites_xml(self) -> str | None:
        self.calls.append(("list_iis_sites_xml",))
        return self.sites_xml

    def show_sslcert(self) -> str:
        self.calls.append(("show_sslcert",))
        if self.fail_sslcert:
            raise WindowsApiError("netsh http show sslcert", 1, "netsh http show sslcert exited 1: The requested "
                                  "operation requires elevation (Run as administrator).")
        if self.raw_sslcert is not None:
            return self.raw_sslcert
        with self.lock:
            return render_sslcert(self.sslcerts)

    def import_pfx(self, store: str, pfx: bytes, password: str, exportable: bool, friendly_name: str) -> str:
        self.calls.append(("import_pfx", store, exportable, friendly_name))
        self.passwords.append(password)
        if self.fail_import:
            raise WindowsApiError("PFXImportCertStore", 0x80070005, "the renewed certificate cannot be imported: "
                                  "PFXImportCertStore failed (error 0x80070005: Access is denied.)")
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(pfx, password.encode("utf-8"))
        except ValueError as e:
            raise WindowsApiError("PFXImportCertStore", 0x80070056, f"the PFX cannot be opened ({e})") from None
        assert key is not None and cert is not None
        der = cert.public_bytes(Encoding.DER)
        chain = tuple(c.public_bytes(Encoding.DER) for c in extra)
        for c in chain:
            recs = self.stores.setdefault(("LocalMachine", "CA"), [])
            if all(r.der != c for r in recs):
                recs.append(StoreRecord("LocalMachine", "CA", c, thumbprint_of(c)))
        thumb = thumbprint_of(der)
        recs = self.stores.setdefault(("LocalMachine", store), [])
        recs[:] = [r for r in recs if r.thumbprint != thumb]
        recs.append(StoreRecord("LocalMachine", store, der, thumb, friendly_name,
                                KeyProvInfo(f"te-{thumb[:8].lower()}", KSP, 0, 0x20, 0),
                                KeyFacts(True, KSP, 0x3 if exportable else 0, public_blob_of(key.public_key()))))
        self.material[thumb] = _Material(der, key, chain)
        return thumb

    def delete(self, store: str, thumbprint: str, delete_key: bool) -> None:
        self.calls.append(("delete", store, thumbprint, delete_key))
        recs = self.stores.get(("LocalMachine", store), [])
        recs[:] = [r for r in recs if r.thumbprint != thumbprint]

    def update_sslcert(self, binding: SslBinding, thumbprint: str, store: str) -> None:
        self.calls.append(("update_sslcert", binding.selector, thumbprint, store))
        if binding.endpoint in self.fail_update:
            raise WindowsApiError("netsh http update sslcert", 1, f"netsh could not rebind {binding.endpoint} "
                                  "(exit 1): SSL Certificate add failed, Error: 1312")
        if self.stuck:
            return
        with self.lock:
            for i, b in enumerate(self.sslcerts):
                if b.selector == binding.selector:
                    self.sslcerts[i] = replace(b, certificate_hash=thumbprint.upper(), store_name=store)
                    return
        raise WindowsApiError("netsh http update sslcert", 1, f"netsh could not rebind {binding.endpoint}: "
                              "The system cannot find the file specified.")

    # what FakeHttpSys asks
    def choose(self, local_ip: str, port: int, sni: str | None) -> str | None:
        with self.lock:
            if sni:
                for b in self.sslcerts:
                    if b.kind == "hostnameport" and b.address.lower() == sni.lower() and b.port == port:
                        return b.certificate_hash
            for want in (local_ip, "0.0.0.0"):
                for b in self.sslcerts:
                    if b.kind == IPPORT and b.address == want and b.port == port:
                        return b.certificate_hash
        return None


class FakeHttpSys:
    """Real TLS listeners on loopback addresses, serving per the fake API's http.sys table."""

    def __init__(self, api: FakeWindowsApi, listen: list[tuple[str, int]]) -> None:
        self.api = api
        self.tmp = tempfile.mkdtemp(prefix="certfleet-httpsys-")
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.sel = selectors.DefaultSelector()
        self.socks = []
        for host, port in listen:
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(16)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.socks.append(s)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _context(self, thumb: str) -> ssl.SSLContext:
        ctx = self.contexts.get(thumb)
        if ctx is None:
            m = self.api.material[thumb]
            path = os.path.join(self.tmp, f"{thumb}.pem")
            with open(path, "wb") as f:
                f.write(m.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
                f.write(x509.load_der_x509_certificate(m.der).public_bytes(Encoding.PEM))
                for c in m.chain:
                    cert = x509.load_der_x509_certificate(c)
                    if cert.subject != cert.issuer:          # http.sys sends intermediates, not the root
                        f.write(cert.public_bytes(Encoding.PEM))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(path)
            ctx.sni_callback = self._sni
            self.contexts[thumb] = ctx
        return ctx

    def _sni(self, sslobj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
        if not name:
            return None
        local_ip, port = sslobj.getsockname()[:2] if hasattr(sslobj, "getsockname") else ("", 0)
        thumb = self.api.choose(local_ip, port, name)
        if thumb:
            sslobj.context = self._context(thumb)
        return None

    def _loop(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.1):
                try:
                    conn, _addr = key.fileobj.accept()        # type: ignore[union-attr]
                except OSError:
                    continue
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        conn.settimeout(5)
        local_ip, port = conn.getsockname()[:2]
        thumb = self.api.choose(local_ip, port, None)
        if thumb is None:
            with self.api.lock:
                thumb = next((b.certificate_hash for b in self.api.sslcerts
                              if b.port == port and b.certificate_hash), None)
        if thumb is None or thumb not in self.api.material:
            conn.close()
            return
        try:
            with self._context(thumb).wrap_socket(conn, server_side=True) as tls:
                try:
                    tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        for s in self.socks:
            self.sel.unregister(s)
            s.close()
        self.sel.close()


def free_port(host: str, also: tuple[str, ...] = ()) -> int:
    """A TCP port free on ``host`` and on every address in ``also``."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        ok = True
        for other in also:
            with socket.socket() as t:
                try:
                    t.bind((other, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port")
