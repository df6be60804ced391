"""Test certificates and report records, made with cryptography (fast EC keys by default)."""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.registry.types import HostFacts, LocationIn, LocationKeyIn, ReportHeaderIn, ScanErrorIn

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

_serials = itertools.count(0x1000)


@functools.lru_cache(maxsize=None)
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def new_key(kind: str = "ec") -> Any:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa_key()
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: Any

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def name(self) -> x509.Name:
        return self.cert.subject


def dn(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def issue(
    cn: str,
    *,
    issuer: Issued | None = None,
    issuer_name: x509.Name | None = None,
    key: Any = None,
    key_kind: str = "ec",
    org: str | None = None,
    sans: Sequence[x509.GeneralName] = (),
    ca: bool | None = None,
    key_usage: dict[str, bool] | None = None,
    eku: Sequence[x509.ObjectIdentifier] = (),
    not_before: dt.datetime = T0 - dt.timedelta(days=1),
    days: float = 90,
    serial: int | None = None,
    key_ids: bool = True,
) -> Issued:
    """A certificate for ``cn``: self-signed when ``issuer`` is None."""
    key = key or new_key(key_kind)
    subject = dn(cn, org)
    signer_key = issuer.key if issuer else key
    iname = issuer_name or (issuer.name if issuer else subject)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(iname)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else next(_serials))
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if key_usage is not None:
        flags = dict.fromkeys(
            ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"], False)
        flags.update(key_usage)
        b = b.add_extension(x509.KeyUsage(**flags), critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if key_ids:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        signer_pub = signer_key.public_key()
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_pub), critical=False)
    algo = None if isinstance(signer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(b.sign(signer_key, algo), key)


def root_ca(cn: str = "Test Root CA", org: str = "certfleet tests", **kw: Any) -> Issued:
    return issue(cn, org=org, ca=True, key_usage={"key_cert_sign": True, "crl_sign": True}, days=3650, **kw)


def intermediate_ca(cn: str, root: Issued, org: str = "certfleet tests", **kw: Any) -> Issued:
    return issue(cn, issuer=root, org=org, ca=True, key_usage={"key_cert_sign": True, "crl_sign": True},
                 days=1825, **kw)


def leaf(cn: str, issuer: Issued, **kw: Any) -> Issued:
    kw.setdefault("sans", [x509.DNSName(cn)])
    kw.setdefault("ca", False)
    kw.setdefault("key_usage", {"digital_signature": True, "key_encipherment": True})
    kw.setdefault("eku", [ExtendedKeyUsageOID.SERVER_AUTH])
    return issue(cn, issuer=issuer, **kw)


ALL_SANS = [
    x509.DNSName("www.example.com"),
    x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
    x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
    x509.RFC822Name("ops@example.com"),
    x509.UniformResourceIdentifier("spiffe://example.com/web"),
]


def with_fingerprint_prefix_collision(der: bytes, digits: int = 6, count: int = 2) -> list[bytes]:
    """``count`` variants of ``der`` whose SHA-256 fingerprints share their first ``digits`` hex digits.

    The variants differ only in the last bytes of the signature: still parseable
    certificates (the registry does not verify leaf signatures), found by the
    birthday paradox in a fraction of a second.
    """
    seen: dict[str, list[bytes]] = {}
    for n in range(1 << 24):
        variant = der[:-3] + n.to_bytes(3, "big")
        p = hashlib.sha256(variant).hexdigest()[:digits]
        group = seen.setdefault(p, [])
        group.append(variant)
        if len(group) == count:
            return group
    raise AssertionError("no collision found")


def location(
    der_or_cert: bytes | Issued,
    path: str,
    *,
    store_type: str = "pem",
    alias: str = "",
    chain_index: int = 0,
    has_private_key: bool = False,
    key_match: str = "no_key",
    entry_type: str = "certificate",
    labels: dict[str, str] | None = None,
    file_mtime: dt.datetime | None = T0 - dt.timedelta(hours=1),
    fingerprint: str | None = None,
) -> LocationIn:
    der = der_or_cert.der if isinstance(der_or_cert, Issued) else der_or_cert
    return LocationIn(
        store_type=store_type, path=path, alias=alias, chain_index=chain_index, der=der,
        fingerprint=fingerprint or hashlib.sha256(der).hexdigest(), has_private_key=has_private_key,
        key_encrypted=False, key_match=key_match, entry_type=entry_type, file_owner="root", file_group="ssl-cert",
        file_mode=0o640, file_mtime=file_mtime, labels=labels or {},
    )


def key_of(loc: LocationIn) -> LocationKeyIn:
    return LocationKeyIn(loc.store_type, loc.path, loc.alias, loc.chain_index)


def host(hostname: str = "web1.example.com", **kw: Any) -> HostFacts:
    kw.setdefault("os", "linux")
    kw.setdefault("os_version", "Debian 12")
    kw.setdefault("agent_version", "0.1.0")
    kw.setdefault("addresses", ("192.0.2.10",))
    return HostFacts(hostname=hostname, **kw)


def header(report_id: str, *, full: bool, sequence: int, base: int = 0, hostname: str = "web1.example.com",
           **host_kw: Any) -> ReportHeaderIn:
    return ReportHeaderIn(report_id=report_id, full=full, sequence=sequence, base_sequence=base,
                          host=host(hostname, **host_kw))


def scan_error(path: str, reason: str = "wrong_password", message: str = "the store password is wrong") -> ScanErrorIn:
    return ScanErrorIn(store_type="pkcs12", path=path, alias="", reason=reason, message=message, observed_at=T0)


def chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def store_report(
    registry: Any, agent_id: str, hdr: ReportHeaderIn, upserts: Sequence[LocationIn] = (),
    removals: Sequence[LocationKeyIn] = (), errors: Sequence[ScanErrorIn] = (), *,
    now: dt.datetime = T0, chunk: int = 1000,
) -> Any:
    """Store one report the way the agent servicer does: header, chunks, finish."""
    txn = registry.begin_report(agent_id, hdr, now)
    try:
        for part in chunks(list(upserts), chunk):
            txn.add_upserts(list(part))
        if removals:
            txn.add_removals(list(removals))
        if errors:
            txn.add_errors(list(errors))
        return txn.finish()
    except BaseException:
        txn.abort()
        raise


def sha1_cert_der(directory: Any, cn: str = "legacy.example.com") -> bytes:
    """A self-signed SHA-1 certificate (valid from now, 90 days): cryptography no longer signs
    with SHA-1, openssl still does. ``directory`` is a pathlib.Path for the key and PEM files."""
    import subprocess

    subprocess.run(
        ["openssl", "req", "-x509", "-sha1", "-newkey", "rsa:2048", "-nodes", "-keyout", str(directory / "k.pem"),
         "-out", str(directory / "c.pem"), "-days", "90", "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}"],
        check=True, capture_output=True,
    )
    cert = x509.load_pem_x509_certificate((directory / "c.pem").read_bytes())
    assert "sha1" in cert.signature_algorithm_oid._name.lower()
    return cert.public_bytes(Encoding.DER)
